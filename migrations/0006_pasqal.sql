-- Pasqal Cloud facade (issue 10): a stable UUID per project (Pasqal's project_id; IBM's 0005 adds
-- the same column, so both statements tolerate it), users with argon2 password hashes for the
-- OAuth password grant, batch lineage (rebatch) and the capabilities behind results links.

ALTER TABLE projects ADD COLUMN IF NOT EXISTS id uuid NOT NULL DEFAULT gen_random_uuid();
CREATE UNIQUE INDEX IF NOT EXISTS projects_id_unique ON projects (id);

CREATE TABLE users (
    user_name       text PRIMARY KEY,
    project         text NOT NULL REFERENCES projects(name),
    -- argon2id PHC string; the password itself is never stored.
    password_hash   text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_name_valid CHECK (length(user_name) BETWEEN 1 AND 128)
);

-- A batch created by rebatch points at the batch it copies.
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS parent_id uuid REFERENCES sessions(id);

-- A results link is an unguessable capability: only its SHA-256 is stored, and it expires.
CREATE TABLE result_links (
    token_hash  bytea PRIMARY KEY,
    job_id      uuid NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX result_links_expiry ON result_links (expires_at);
