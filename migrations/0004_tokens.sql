-- Token management (issue 7): tokens may expire, and an index serves the one-admin-token check
-- at start-up and the listing of tokens.
ALTER TABLE tokens ADD COLUMN expires_at timestamptz;
ALTER TABLE tokens ADD CONSTRAINT tokens_expiry_after_creation CHECK (expires_at IS NULL OR expires_at > created_at);
CREATE INDEX tokens_active_admins ON tokens (created_at) WHERE is_admin AND revoked_at IS NULL;
CREATE INDEX tokens_by_created ON tokens (created_at DESC, id DESC);
