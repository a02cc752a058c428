-- The values of task_status mirror TaskStatus in services/core/src/tasks/state.ts (a test holds them equal).
CREATE TYPE task_status AS ENUM ('pending', 'queued', 'in_progress', 'completed', 'failed', 'cancelled');

CREATE TABLE tasks (
  id            uuid PRIMARY KEY,
  type          text NOT NULL,
  payload       jsonb NOT NULL,
  priority      smallint NOT NULL CHECK (priority BETWEEN 0 AND 9),
  status        task_status NOT NULL DEFAULT 'pending',
  attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  max_attempts  integer NOT NULL CHECK (max_attempts >= 1),
  result        jsonb,
  error         jsonb,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  started_at    timestamptz,
  finished_at   timestamptz
);

-- Lists are newest first (ids are UUIDv7, so id order is creation order) and filter by status or type.
CREATE INDEX tasks_status_id_idx ON tasks (status, id DESC);
CREATE INDEX tasks_type_id_idx ON tasks (type, id DESC);
