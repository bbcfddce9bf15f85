-- Bulk submit (issue 11, POST /v1/jobs:batch): the `job.queued` events of an INSERT into `jobs`
-- are written by one statement-level trigger (a transition table), not one row-level trigger call
-- per job. Measured with EXPLAIN ANALYZE on a 10,000-job bulk insert (bench/server/RESULTS.md,
-- 2026-12-03): the row-level trigger took 812 ms of the statement's 1,581 ms (10,000 PL/pgSQL
-- calls, each planning-cached but still one INSERT ... VALUES each); one INSERT ... SELECT over
-- the inserted rows does the same work in one pass.
--
-- The events are the same rows as before, in the same `id` order (the rows' insertion order, which
-- is `seq` order: `seq` is drawn row by row as rows are inserted). Status changes (UPDATE) keep
-- their row-level trigger: they come one job at a time.
DROP TRIGGER jobs_event_insert ON jobs;

CREATE FUNCTION qcloud_job_events_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (project, type, job_id, session_id, device, status, reason, data)
    SELECT n.project, 'job.' || n.status, n.id, n.session_id, n.device, n.status, n.reason,
           jsonb_build_object(
               'job_id', n.id, 'session_id', n.session_id, 'device', n.device, 'program', n.program,
               'status', n.status, 'previous_status', NULL::text,
               'reason', n.reason, 'reason_code', n.reason_code, 'attempt', n.attempt,
               'created_at', n.created_at, 'started_at', n.started_at, 'finished_at', n.finished_at,
               'usage_seconds', n.usage_seconds,
               'session_last_job_completed', CASE WHEN n.status = 'running' AND n.session_id IS NOT NULL
                   THEN (SELECT s.last_job_completed FROM sessions s WHERE s.id = n.session_id) END)
    FROM new_jobs n
    ORDER BY n.seq;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_event_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION qcloud_job_events_inserted();
