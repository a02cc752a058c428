-- Outbox, leases with fencing, retries with backoff, cancellation, idempotent submit and retention.
ALTER TABLE tasks
  ADD COLUMN run_at              timestamptz NOT NULL DEFAULT now(),
  ADD COLUMN lease_token         uuid,
  ADD COLUMN lease_expires_at    timestamptz,
  ADD COLUMN worker_id           text,
  ADD COLUMN errors              jsonb NOT NULL DEFAULT '[]',
  ADD COLUMN cancel_requested_at timestamptz,
  ADD COLUMN backoff             jsonb NOT NULL DEFAULT '{"type": "exponential", "delayMs": 1000, "maxDelayMs": 300000, "jitter": true}',
  ADD COLUMN timeout_ms          integer CHECK (timeout_ms > 0),
  ADD COLUMN idempotency_key     text,
  ADD COLUMN retention_ms        bigint CHECK (retention_ms >= 0);

CREATE UNIQUE INDEX tasks_idempotency_key_idx ON tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The relay's scan: due pending tasks, highest priority and oldest first.
CREATE INDEX tasks_pending_due_idx ON tasks (priority DESC, run_at, id) WHERE status = 'pending';
-- The reaper's scan: running tasks by lease expiry.
CREATE INDEX tasks_in_progress_lease_idx ON tasks (lease_expires_at) WHERE status = 'in_progress';
-- The reconciliation pass: queued tasks by how long they have waited.
CREATE INDEX tasks_queued_since_idx ON tasks (updated_at) WHERE status = 'queued';
-- The retention sweep: finished tasks by age.
CREATE INDEX tasks_finished_at_idx ON tasks (finished_at) WHERE status IN ('completed', 'failed', 'cancelled');
