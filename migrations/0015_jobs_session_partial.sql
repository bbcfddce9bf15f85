-- `jobs_session` covers session jobs only (issue 11). Every query that uses it names a session
-- (`session_id = $1`, `session_id = ANY(...)`), which implies `session_id IS NOT NULL`, so they can
-- all still use it. What changes:
-- - a job-mode job writes no entry into it, at its insert and at each status change (each is a
--   non-HOT update that writes every index of the row);
-- - it can no longer serve a query on `status` alone. With generic plans, a batched start
--   (`id = ANY($1) AND status = 'queued'`) planned while the statistics knew of almost no queued
--   jobs took a bitmap scan of this whole index (as `status = 'queued'` on its second column)
--   instead of the primary key: auto_explain of a 100,000-job drain showed it in 1,588 of 1,960
--   slow statements, each reading every queued job's entry.
DROP INDEX jobs_session;
CREATE INDEX jobs_session ON jobs (session_id, status) WHERE session_id IS NOT NULL;
