-- Rule 3 looks at the head of each project's queue on a device (its highest-priority, earliest
-- job-mode job): the best candidate is always one of these heads, and fair share compares
-- projects. This index lets a loose index scan find the heads with one probe per project,
-- however deep the queue.
CREATE INDEX jobs_queued_heads ON jobs (device, project, priority DESC, seq)
    WHERE status = 'queued' AND session_id IS NULL;
