-- Retention (issue 11): terminal jobs whose `finished_at` is older than the server's
-- `job_retention` are deleted in small batches, oldest first, through this index (it holds only
-- terminal jobs, so the queue's hot paths never see it).
CREATE INDEX jobs_terminal_finished ON jobs (finished_at) WHERE status IN ('completed', 'failed', 'canceled');

-- A pruned job's children (retries, rebatched jobs) keep their rows; only the link to the
-- pruned parent goes.
ALTER TABLE jobs DROP CONSTRAINT jobs_parent_id_fkey,
    ADD CONSTRAINT jobs_parent_id_fkey FOREIGN KEY (parent_id) REFERENCES jobs(id) ON DELETE SET NULL;
