-- Signing in through Tessera's own pages: login sessions, authorization codes, consents.

-- A browser's login session. The cookie carries a secret; only its hash is kept. `id` is the
-- public handle: the id_token's `sid` and what `tessera session list/revoke` show.
CREATE TABLE browser_sessions (
    id              TEXT PRIMARY KEY,
    secret_hash     BYTEA NOT NULL UNIQUE,
    user_id         TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    auth_time       BIGINT NOT NULL,
    last_seen_at    BIGINT NOT NULL,
    idle_expires_at BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    revoked_at      BIGINT,
    -- The authorization request whose consent page this session was last shown (its hash):
    -- the consent form is taken only for it, once.
    pending_consent BYTEA,
    pending_consent_at BIGINT
);
CREATE INDEX browser_sessions_user ON browser_sessions (user_id);
CREATE INDEX browser_sessions_expires ON browser_sessions (expires_at);

-- Authorization codes (RFC 6749 §4.1.2), kept by hash. A redeemed code stays until it
-- expires, with what was issued from it, so that a second use revokes that (§4.1.2).
CREATE TABLE authorization_codes (
    code_hash         BYTEA PRIMARY KEY,
    client_id         TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    user_id           TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    session_id        TEXT NOT NULL,
    redirect_uri      TEXT,
    scope             TEXT NOT NULL,
    code_challenge    TEXT NOT NULL,
    nonce             TEXT,
    auth_time         BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    expires_at        BIGINT NOT NULL,
    redeemed_at       BIGINT,
    family_id         TEXT,
    access_jti        TEXT,
    access_expires_at BIGINT
);
CREATE INDEX authorization_codes_expires ON authorization_codes (expires_at);

-- What a user allowed a client, remembered so that the consent page is shown again only for
-- scopes not yet allowed.
CREATE TABLE consents (
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

-- The login session a refresh family was started from: ending the session (logout, `tessera
-- session revoke`, a password change) revokes it. Families granted offline_access name none.
ALTER TABLE refresh_families ADD COLUMN session_id TEXT;
CREATE INDEX refresh_families_session ON refresh_families (session_id) WHERE session_id IS NOT NULL;
