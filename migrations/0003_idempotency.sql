-- Idempotency keys (issue 7): a key reused with a different request is refused (422), so a client bug
-- cannot pass unnoticed; `request_hash` is the SHA-256 of the submitted request in canonical form.
-- Keys expire after a window (the server's `idempotency_window`): an expired key is taken off its old
-- job (idempotency_key set to NULL) when it is used again, so the unique constraint stays as it is.
ALTER TABLE jobs ADD COLUMN request_hash bytea;
