-- Tessera schema, SQLite flavour. Times are Unix seconds (BIGINT), flags are 0/1 BIGINTs and ids
-- are text UUIDs, so that one set of SQL statements serves both backends.

CREATE TABLE users (
    id                  TEXT PRIMARY KEY,
    username            TEXT NOT NULL,
    username_normalized TEXT NOT NULL UNIQUE,
    password_hash       TEXT NOT NULL,
    disabled            BIGINT NOT NULL DEFAULT 0,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    password_changed_at BIGINT NOT NULL
);

CREATE TABLE roles (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL
);

CREATE TABLE user_roles (
    user_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role_name TEXT NOT NULL REFERENCES roles(name) ON DELETE CASCADE,
    PRIMARY KEY (user_id, role_name)
);
CREATE INDEX user_roles_role ON user_roles (role_name);

CREATE TABLE clients (
    client_id     TEXT PRIMARY KEY,
    name          TEXT NOT NULL DEFAULT '',
    secret_hash   BLOB,
    grant_types   TEXT NOT NULL,
    scopes        TEXT NOT NULL DEFAULT '',
    audiences     TEXT NOT NULL DEFAULT '',
    access_ttl    BIGINT,
    introspect    BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- A family is one login session: every refresh token rotated from one grant.
CREATE TABLE refresh_families (
    id             TEXT PRIMARY KEY,
    user_id        TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    client_id      TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    scope          TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    revoked_at     BIGINT,
    revoked_reason TEXT
);
CREATE INDEX refresh_families_user ON refresh_families (user_id);
CREATE INDEX refresh_families_client ON refresh_families (client_id);
CREATE INDEX refresh_families_expires ON refresh_families (expires_at);

CREATE TABLE refresh_tokens (
    token_hash      BLOB PRIMARY KEY,
    family_id       TEXT NOT NULL REFERENCES refresh_families(id) ON DELETE CASCADE,
    issued_at       BIGINT NOT NULL,
    idle_expires_at BIGINT NOT NULL,
    rotated_at      BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_idle_expires ON refresh_tokens (idle_expires_at);

-- Signing keys. `generation` is unique so that instances racing to create or rotate a key
-- cannot both win: the database decides.
CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    generation     BIGINT NOT NULL UNIQUE,
    algorithm      TEXT NOT NULL,
    public_jwk     TEXT NOT NULL,
    private_key    BLOB NOT NULL,
    created_at     BIGINT NOT NULL,
    activates_at   BIGINT NOT NULL,
    retired_at     BIGINT
);

CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL DEFAULT '',
    outcome   TEXT NOT NULL,
    username  TEXT,
    client_id TEXT,
    details   TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_username_at ON audit_log (username, at);
CREATE INDEX audit_log_client_at ON audit_log (client_id, at);
CREATE INDEX audit_log_action_at ON audit_log (action, at);

-- Access tokens revoked before their expiry; kept until `expires_at`, then collected.
CREATE TABLE access_denylist (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX access_denylist_expires ON access_denylist (expires_at);

-- Failed password attempts per normalized username, whether or not the account exists.
CREATE TABLE login_throttle (
    username_normalized TEXT PRIMARY KEY,
    failures            BIGINT NOT NULL,
    locked_until        BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX login_throttle_updated ON login_throttle (updated_at);
