-- A revoked signing key (compromised) leaves the JWKS at once and verifies nothing again; the
-- row stays until clean-up would have dropped it anyway, so `key list` still shows it.
ALTER TABLE signing_keys ADD COLUMN revoked_at BIGINT;
