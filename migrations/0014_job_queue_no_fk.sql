-- The queue table's foreign key to `jobs` goes (issue 11, bulk submit). `job_queue` is written only
-- by the triggers of `jobs` (0012), from rows of `jobs` in the same statement, so its `job_id`
-- always names a job; the key's check cost one row-level trigger call per queued job, each of
-- which locked the new `jobs` row (FOR KEY SHARE: a write and a WAL record per job). On a
-- 10,000-job bulk insert that was about a third of the queue trigger's time.
--
-- What the key's ON DELETE CASCADE did (a deleted queued job leaves the queue) is now one
-- statement-level trigger per DELETE: it looks only at the deleted rows that were queued, so the
-- retention pruner's deletes of finished jobs no longer pay a cascade check per row either.
ALTER TABLE job_queue DROP CONSTRAINT job_queue_job_id_fkey;

CREATE FUNCTION qcloud_job_queue_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM job_queue q USING old_jobs o WHERE o.status = 'queued' AND q.job_id = o.id;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_queue_delete AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION qcloud_job_queue_delete();
