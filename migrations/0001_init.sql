-- qcloud schema: devices, sessions, jobs, results, tokens, the leader lease and usage windows.
-- The device invariants of DESIGN.md §3 (rules 1 and 2) live here as named partial unique
-- indexes, so that no code path, replica or race can break them.

CREATE TABLE projects (
    name        text PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Rule 13: optional quota of device seconds; NULL = unlimited.
    quota_seconds double precision,
    CONSTRAINT projects_name_valid CHECK (length(name) BETWEEN 1 AND 128)
);

CREATE TABLE tokens (
    id          uuid PRIMARY KEY,
    -- SHA-256 of the token; the token itself is never stored.
    token_hash  bytea NOT NULL,
    project     text NOT NULL REFERENCES projects(name),
    user_name   text NOT NULL,
    is_admin    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CONSTRAINT tokens_hash_unique UNIQUE (token_hash)
);

CREATE TABLE devices (
    name        text PRIMARY KEY,
    kind        text NOT NULL,
    driver      text NOT NULL,
    status      text NOT NULL DEFAULT 'online',
    num_qubits  integer NOT NULL,
    timing      jsonb NOT NULL DEFAULT '{}'::jsonb,
    config      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT devices_name_valid CHECK (name ~ '^[A-Za-z0-9_.-]{1,64}$'),
    CONSTRAINT devices_kind_valid CHECK (kind IN ('gate', 'analog')),
    CONSTRAINT devices_driver_valid CHECK (driver IN ('noop', 'statevector', 'analog', 'agent')),
    CONSTRAINT devices_status_valid CHECK (status IN ('online', 'paused', 'offline')),
    CONSTRAINT devices_num_qubits_valid CHECK (num_qubits BETWEEN 0 AND 100000)
);

CREATE TABLE sessions (
    id                  uuid PRIMARY KEY,
    project             text NOT NULL REFERENCES projects(name),
    user_name           text NOT NULL,
    device              text NOT NULL REFERENCES devices(name),
    mode                text NOT NULL,
    state               text NOT NULL DEFAULT 'pending',
    closed_reason       text,
    accepting_jobs      boolean NOT NULL DEFAULT true,
    max_ttl_ms          bigint NOT NULL,
    interactive_ttl_ms  bigint NOT NULL,
    pending_ttl_ms      bigint NOT NULL,
    idle_policy         text NOT NULL,
    priority            smallint NOT NULL DEFAULT 1,
    tags                text[] NOT NULL DEFAULT '{}',
    webhook             text,
    default_program     jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    activated_at        timestamptz,
    last_job_submitted  timestamptz,
    last_job_started    timestamptz,
    last_job_completed  timestamptz,
    closed_at           timestamptz,
    -- The next instant a timer rule may fire (max TTL, interactive TTL, pending TTL); the
    -- leader only looks at sessions whose deadline has passed.
    next_deadline       timestamptz,
    usage_seconds       double precision NOT NULL DEFAULT 0,
    CONSTRAINT sessions_mode_valid CHECK (mode IN ('dedicated', 'batch')),
    CONSTRAINT sessions_state_valid CHECK (state IN ('pending', 'active', 'inactive', 'closed')),
    CONSTRAINT sessions_closed_reason_valid CHECK (
        (state = 'closed') = (closed_reason IS NOT NULL)
        AND (closed_reason IS NULL OR closed_reason IN ('completed', 'canceled', 'max_ttl', 'idle_timeout', 'failed'))
    ),
    CONSTRAINT sessions_idle_policy_valid CHECK (idle_policy IN ('deactivate', 'time_out')),
    CONSTRAINT sessions_ttls_positive CHECK (max_ttl_ms > 0 AND interactive_ttl_ms > 0 AND pending_ttl_ms > 0)
);

-- Rule 2: a device is held by at most one active session.
CREATE UNIQUE INDEX sessions_one_active_per_device ON sessions (device) WHERE state = 'active';
CREATE INDEX sessions_project_created ON sessions (project, created_at DESC, id DESC);
CREATE INDEX sessions_waiting ON sessions (device) WHERE state IN ('pending', 'inactive');
CREATE INDEX sessions_deadline ON sessions (next_deadline) WHERE state <> 'closed';

CREATE SEQUENCE jobs_seq;

CREATE TABLE jobs (
    id                  uuid PRIMARY KEY,
    seq                 bigint NOT NULL DEFAULT nextval('jobs_seq'),
    project             text NOT NULL REFERENCES projects(name),
    user_name           text NOT NULL,
    device              text NOT NULL REFERENCES devices(name),
    session_id          uuid REFERENCES sessions(id),
    program             text NOT NULL,
    payload             jsonb NOT NULL,
    shots               bigint,
    tags                text[] NOT NULL DEFAULT '{}',
    priority            smallint NOT NULL DEFAULT 1,
    status              text NOT NULL DEFAULT 'queued',
    reason              text,
    reason_code         text,
    attempt             integer NOT NULL DEFAULT 0,
    parent_id           uuid REFERENCES jobs(id),
    idempotency_key     text,
    max_execution_ms    bigint NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    usage_seconds       double precision NOT NULL DEFAULT 0,
    cancel_requested    boolean NOT NULL DEFAULT false,
    -- Who runs it: the leader term that assigned it, the worker (replica) holding its lease,
    -- the lease epoch (fencing token: bumped at every claim) and when the lease runs out.
    assigned_term       bigint,
    lease_owner         uuid,
    lease_epoch         bigint NOT NULL DEFAULT 0,
    lease_expires_at    timestamptz,
    CONSTRAINT jobs_status_valid CHECK (status IN ('queued', 'running', 'completed', 'failed', 'canceled')),
    CONSTRAINT jobs_terminal_has_finish CHECK ((status IN ('completed', 'failed', 'canceled')) = (finished_at IS NOT NULL)),
    CONSTRAINT jobs_running_has_start CHECK (status <> 'running' OR started_at IS NOT NULL),
    CONSTRAINT jobs_idempotency_key_unique UNIQUE (project, idempotency_key)
);

-- Rule 1: a device runs at most one job at a time.
CREATE UNIQUE INDEX jobs_one_running_per_device ON jobs (device) WHERE status = 'running';
-- The queue: candidates per device in rule-3 order.
CREATE INDEX jobs_queued_by_device ON jobs (device, priority DESC, seq) WHERE status = 'queued';
CREATE INDEX jobs_queued_by_session ON jobs (session_id, seq) WHERE status = 'queued';
CREATE INDEX jobs_session ON jobs (session_id, status);
CREATE INDEX jobs_project_created ON jobs (project, created_at DESC, id DESC);
CREATE INDEX jobs_unclaimed ON jobs (started_at) WHERE status = 'running' AND lease_owner IS NULL;
CREATE INDEX jobs_leased ON jobs (lease_owner) WHERE status = 'running';

-- Results are kept apart: they can be large, and the jobs table stays hot and small.
CREATE TABLE job_results (
    job_id      uuid PRIMARY KEY REFERENCES jobs(id) ON DELETE CASCADE,
    result      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- One row: the scheduler leader's lease. Every assignment checks the term it carries.
CREATE TABLE leader_lease (
    id          integer PRIMARY KEY DEFAULT 1,
    holder      uuid,
    term        bigint NOT NULL DEFAULT 0,
    expires_at  timestamptz NOT NULL DEFAULT '-infinity',
    CONSTRAINT leader_lease_single_row CHECK (id = 1)
);
INSERT INTO leader_lease (id) VALUES (1);

-- Rule 3 fair share: device seconds per project in one-minute buckets.
CREATE TABLE device_usage (
    device      text NOT NULL,
    project     text NOT NULL,
    bucket      timestamptz NOT NULL,
    seconds     double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (device, project, bucket)
);
