-- The queue as its own narrow table (issue 11). Rule 3's heads, a session's next job and "does
-- this device have queued work" were index scans of partial indexes of `jobs` (WHERE status =
-- 'queued'): every job that started left a dead entry at the head of its device's range, which
-- every later scan walked until a VACUUM of `jobs` (with its history, the largest table) removed
-- it. Measured with pg_stat_statements (bench/server/run.sh BENCH_PRIVATE_PG=1, e2e:64 and a
-- 20,000-job drain): the heads query was 66 % of all statement time (8.9 ms per call) and the
-- leader's sweep took 145 ms per call.
--
-- `job_queue` holds one row per queued job and nothing else; the triggers below keep it equal to
-- `jobs WHERE status = 'queued'` in the same transaction, so every reader sees both agree. Rows
-- go when jobs start, so the table stays as small as the queue and a VACUUM of it (the leader
-- runs one every few seconds; autovacuum thresholds are set low for it too) costs milliseconds.
CREATE TABLE job_queue (
    job_id      uuid PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    device      text NOT NULL,
    project     text NOT NULL,
    session_id  uuid,
    priority    smallint NOT NULL,
    seq         bigint NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
        autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 10000);

-- Rule 3: the head of each project's job-mode queue on a device (loose index scan).
CREATE INDEX job_queue_heads ON job_queue (device, project, priority DESC, seq) WHERE session_id IS NULL;
-- Queue length and position per device, and "has queued work".
CREATE INDEX job_queue_device ON job_queue (device, priority DESC, seq);
-- A session's queued jobs in arrival order.
CREATE INDEX job_queue_session ON job_queue (session_id, seq) WHERE session_id IS NOT NULL;

INSERT INTO job_queue (job_id, device, project, session_id, priority, seq)
SELECT id, device, project, session_id, priority, seq FROM jobs WHERE status = 'queued';

-- Inserts: one statement-level trigger per INSERT statement (a bulk submit of 10,000 jobs fills
-- the queue in one INSERT ... SELECT).
CREATE FUNCTION qcloud_job_queue_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO job_queue (job_id, device, project, session_id, priority, seq)
    SELECT id, device, project, session_id, priority, seq FROM new_jobs WHERE status = 'queued';
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_queue_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION qcloud_job_queue_insert();

-- Updates: a job leaves the queue (started, canceled, failed), comes back (requeued after a lost
-- worker) or changes a queue column while queued.
CREATE FUNCTION qcloud_job_queue_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status = 'queued' THEN
        DELETE FROM job_queue WHERE job_id = OLD.id;
    END IF;
    IF NEW.status = 'queued' THEN
        INSERT INTO job_queue (job_id, device, project, session_id, priority, seq)
        VALUES (NEW.id, NEW.device, NEW.project, NEW.session_id, NEW.priority, NEW.seq);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_queue_update AFTER UPDATE OF status, device, project, session_id, priority, seq ON jobs
    FOR EACH ROW
    WHEN ((OLD.status = 'queued' OR NEW.status = 'queued')
          AND (OLD.status, OLD.device, OLD.project, OLD.session_id, OLD.priority, OLD.seq)
              IS DISTINCT FROM (NEW.status, NEW.device, NEW.project, NEW.session_id, NEW.priority, NEW.seq))
    EXECUTE FUNCTION qcloud_job_queue_update();

-- The partial indexes the queue table replaces (fewer index entries per job insert).
DROP INDEX jobs_queued_heads;
DROP INDEX jobs_queued_by_device;
DROP INDEX jobs_queued_by_session;
