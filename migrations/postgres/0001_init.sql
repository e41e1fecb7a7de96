-- Times are Unix milliseconds; sets are JSON arrays of strings (the same layout as SQLite, so
-- one store implementation serves both).
CREATE TABLE keygate_meta (
    name  TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO keygate_meta (name, value) VALUES ('revision', 0);

CREATE TABLE tenants (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    status            TEXT NOT NULL,
    subscription      TEXT NOT NULL,
    modules           TEXT NOT NULL,
    rate_limit        BIGINT,
    rate_limit_window BIGINT,
    created_at        BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    name              TEXT NOT NULL,
    prefix            TEXT NOT NULL,
    secret_hash       BYTEA NOT NULL UNIQUE,
    scopes            TEXT NOT NULL,
    allowed_origins   TEXT NOT NULL,
    expires_at        BIGINT,
    revoked_at        BIGINT,
    rate_limit        BIGINT,
    rate_limit_window BIGINT,
    created_at        BIGINT NOT NULL,
    last_used_at      BIGINT
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, id);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    algorithm   TEXT NOT NULL,
    private_key BYTEA NOT NULL,
    public_key  BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT
);
