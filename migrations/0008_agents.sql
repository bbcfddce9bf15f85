-- The agent driver (issue 12): device tokens, the agent's contact and its device report.
--
-- A device token is scoped to one device and to the agent routes only; it lives apart from user
-- tokens, so a user route never accepts it and an agent route never accepts a user token.
CREATE TABLE device_tokens (
    id          uuid PRIMARY KEY,
    -- SHA-256 of the token; the token itself is never stored.
    token_hash  bytea NOT NULL,
    device      text NOT NULL REFERENCES devices(name) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CONSTRAINT device_tokens_hash_unique UNIQUE (token_hash)
);
CREATE INDEX device_tokens_by_device ON device_tokens (device, created_at DESC);

-- What the agent last said and when it was last heard from. `agent_connected` is set at every
-- contact and cleared by the leader when the agent has not been heard from for
-- `agent_offline_after`: an agent device takes assignments only while its agent is connected
-- and reports itself online (rule 11).
ALTER TABLE devices ADD COLUMN agent_status text;
ALTER TABLE devices ADD CONSTRAINT devices_agent_status_valid
    CHECK (agent_status IS NULL OR agent_status IN ('online', 'paused', 'offline'));
ALTER TABLE devices ADD COLUMN agent_connected boolean NOT NULL DEFAULT false;
ALTER TABLE devices ADD COLUMN agent_seen_at timestamptz;
-- The agent's report: {"target": ..., "pulser_device": ..., "calibration": ..., "message": ...}.
ALTER TABLE devices ADD COLUMN agent_report jsonb;

-- Progress an agent reports on a running job (status text and a fraction).
ALTER TABLE jobs ADD COLUMN progress_message text;
ALTER TABLE jobs ADD COLUMN progress_fraction double precision;
ALTER TABLE jobs ADD CONSTRAINT jobs_progress_fraction_valid
    CHECK (progress_fraction IS NULL OR (progress_fraction >= 0 AND progress_fraction <= 1));
-- The job's log: what the agent's program wrote to stderr (its tail).
ALTER TABLE jobs ADD COLUMN log text;
-- When the agent claimed the job: its maximum execution time counts from here.
ALTER TABLE jobs ADD COLUMN claimed_at timestamptz;
