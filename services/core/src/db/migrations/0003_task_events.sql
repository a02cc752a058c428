-- A task's history: one row per thing that happened to it, appended by the statement that made it happen.
CREATE TABLE task_events (
  id         bigserial PRIMARY KEY,
  task_id    uuid NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
  -- clock_timestamp(), not now(): the time the event is written, so that times follow the id order even when
  -- concurrent transactions (a claim and a publish confirm) write events for one task.
  at         timestamptz NOT NULL DEFAULT clock_timestamp(),
  kind       text NOT NULL,
  attempt    integer NOT NULL,
  worker_id  text,
  detail     jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX task_events_task_id_idx ON task_events (task_id, id);
