-- Deleting old jobs (retention, issue 11) checks the foreign keys that point at them: without an
-- index on the referencing column every deleted job scanned the whole table (measured by the
-- history benchmark: 149 ms per pruned job at 200,000 jobs, almost all in jobs_parent_id_fkey's
-- ON DELETE SET NULL). Only retries and rebatched jobs have a parent, so the index is partial.
CREATE INDEX jobs_parent ON jobs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX result_links_job ON result_links (job_id);
