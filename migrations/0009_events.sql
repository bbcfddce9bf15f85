-- Events, webhooks and their outbox (issue 13, DESIGN.md §6).
--
-- Every state change of a job (`job.queued|running|completed|failed|canceled`) and of a session
-- (`session.active|inactive|closed`) writes one row into `events`, by a trigger, in the same
-- transaction as the change: no code path (native API, IBM or Pasqal facade, the scheduler's
-- dispatch, completion, timers, rescue) can change a state without its event, and an event never
-- exists for a change that rolled back.
--
-- `id` is the insertion order. It is NOT the public event id: transactions commit in another order
-- than they draw ids, so a reader that remembered "I saw up to 105" could miss a 104 that commits
-- later. `seq`, the public, gap-free, monotonic id (SSE `id:`, `Last-Event-ID`, `webhook-id`), is
-- given by the sequencer (`qcloud-store::events::sequence`) after commit: one transaction at a time
-- (it locks `event_sequencer`), it numbers every committed row that has none, in `id` order, and
-- fans the new events out to the webhook outbox. Anything a reader sees under `seq <= N` is final.
--
-- The triggers send no NOTIFY: Postgres serialises the commits of notifying transactions (a global
-- lock), which would put every submit and completion in one line. Every replica's event hub polls
-- the partial index `events_unsequenced` instead (a cheap probe every `HUB_POLL`), and the
-- sequencer notifies once per pass.

CREATE TABLE events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq         bigint,
    project     text NOT NULL,
    type        text NOT NULL,
    job_id      uuid,
    session_id  uuid,
    device      text NOT NULL,
    status      text NOT NULL,
    reason      text,
    data        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT events_seq_unique UNIQUE (seq)
);
CREATE INDEX events_unsequenced ON events (id) WHERE seq IS NULL;
CREATE INDEX events_project_seq ON events (project, seq) WHERE seq IS NOT NULL;
CREATE INDEX events_created ON events (created_at);

-- One row: the last `seq` given. Its row lock is the sequencer's mutex.
CREATE TABLE event_sequencer (
    id          integer PRIMARY KEY DEFAULT 1,
    last_seq    bigint NOT NULL DEFAULT 0,
    CONSTRAINT event_sequencer_single_row CHECK (id = 1)
);
INSERT INTO event_sequencer (id) VALUES (1);

CREATE FUNCTION qcloud_job_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (project, type, job_id, session_id, device, status, reason, data)
    VALUES (NEW.project, 'job.' || NEW.status, NEW.id, NEW.session_id, NEW.device, NEW.status, NEW.reason,
            jsonb_build_object(
                'job_id', NEW.id, 'session_id', NEW.session_id, 'device', NEW.device, 'program', NEW.program,
                'status', NEW.status, 'previous_status', CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END,
                'reason', NEW.reason, 'reason_code', NEW.reason_code, 'attempt', NEW.attempt,
                'created_at', NEW.created_at, 'started_at', NEW.started_at, 'finished_at', NEW.finished_at,
                'usage_seconds', NEW.usage_seconds,
                -- For the idle-gap histogram: when the session's previous job finished.
                'session_last_job_completed', CASE WHEN NEW.status = 'running' AND NEW.session_id IS NOT NULL
                    THEN (SELECT s.last_job_completed FROM sessions s WHERE s.id = NEW.session_id) END));
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_event_insert AFTER INSERT ON jobs
    FOR EACH ROW EXECUTE FUNCTION qcloud_job_event();
CREATE TRIGGER jobs_event_status AFTER UPDATE OF status ON jobs
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION qcloud_job_event();

CREATE FUNCTION qcloud_session_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO events (project, type, session_id, device, status, reason, data)
    VALUES (NEW.project, 'session.' || NEW.state, NEW.id, NEW.device, NEW.state, NEW.closed_reason,
            jsonb_build_object(
                'session_id', NEW.id, 'device', NEW.device, 'mode', NEW.mode, 'state', NEW.state,
                'previous_state', OLD.state, 'reason', NEW.closed_reason, 'accepting_jobs', NEW.accepting_jobs,
                'created_at', NEW.created_at, 'started_at', NEW.started_at, 'activated_at', NEW.activated_at,
                'closed_at', NEW.closed_at, 'usage_seconds', NEW.usage_seconds));
    RETURN NULL;
END $$;

-- Sessions are born `pending` (no event); their later states are events.
CREATE TRIGGER sessions_event_state AFTER UPDATE OF state ON sessions
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION qcloud_session_event();

-- Webhook subscriptions. A project-wide one has neither job_id nor session_id; one made by the
-- `webhook` of a job, a session or a Pasqal batch names its scope. `event_types` empty = all.
-- The secret signs deliveries (Standard Webhooks); it must be kept to sign, so it is stored as is.
CREATE TABLE webhooks (
    id          uuid PRIMARY KEY,
    project     text NOT NULL REFERENCES projects(name),
    url         text NOT NULL,
    event_types text[] NOT NULL DEFAULT '{}',
    secret      text NOT NULL,
    job_id      uuid,
    session_id  uuid,
    -- `event`: the event envelope; `pasqal_job`: Pasqal's job object with its result.
    format      text NOT NULL DEFAULT 'event',
    created_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at  timestamptz,
    CONSTRAINT webhooks_format_valid CHECK (format IN ('event', 'pasqal_job')),
    CONSTRAINT webhooks_url_length CHECK (length(url) BETWEEN 1 AND 2048)
);
CREATE INDEX webhooks_project ON webhooks (project, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX webhooks_job ON webhooks (job_id) WHERE job_id IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX webhooks_session ON webhooks (session_id) WHERE session_id IS NOT NULL AND deleted_at IS NULL;

-- The outbox: one row per (subscription, event), made by the sequencer. Delivered in `event_seq`
-- order per subscription: only the oldest pending row of a subscription may be claimed. A claim
-- (any replica, SKIP LOCKED) takes a lease (`locked_until`); a replica that dies mid-delivery
-- leaves the lease to expire and another one delivers again (at least once).
CREATE TABLE webhook_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id      uuid NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_seq       bigint NOT NULL,
    status          text NOT NULL DEFAULT 'pending',
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_by       uuid,
    locked_until    timestamptz,
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    CONSTRAINT webhook_deliveries_status_valid CHECK (status IN ('pending', 'delivered', 'failed')),
    CONSTRAINT webhook_deliveries_once UNIQUE (webhook_id, event_seq)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, event_seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_at) WHERE status <> 'pending';
CREATE INDEX webhook_deliveries_pending_event ON webhook_deliveries (event_seq) WHERE status = 'pending';
