-- The IBM Quantum facade (issue 8): a stable UUID per project, from which its instance CRN is
-- derived (the Pasqal facade reuses it as `project_id`), and the keys that sign the facade's
-- tokens, shared by every replica through the database.

ALTER TABLE projects ADD COLUMN id uuid NOT NULL DEFAULT gen_random_uuid();
ALTER TABLE projects ADD CONSTRAINT projects_id_unique UNIQUE (id);

-- One row per key name (`ibm_jwt`: HS256 secret of the tokens /ibm/identity/token issues). The
-- first replica that needs a key inserts a random one with ON CONFLICT DO NOTHING and every
-- replica then reads the row, so all agree without a race.
CREATE TABLE signing_keys (
    name        text PRIMARY KEY,
    secret      bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT signing_keys_secret_length CHECK (length(secret) >= 32)
);

-- IBM's job listing filters on tags (all given tags must be present).
CREATE INDEX jobs_tags ON jobs USING gin (tags);
