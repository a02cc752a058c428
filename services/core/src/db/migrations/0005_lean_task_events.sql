-- Every task writes four events (submitted, published, started, completed). The foreign key made each of them
-- look up and lock its task row, and the primary key was a second index to maintain; the history is read only
-- through (task_id, id), and the statements that delete tasks delete their events with them.
ALTER TABLE task_events DROP CONSTRAINT task_events_task_id_fkey;
ALTER TABLE task_events DROP CONSTRAINT task_events_pkey;
