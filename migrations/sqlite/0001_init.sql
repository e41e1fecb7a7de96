-- Times are Unix milliseconds; sets are JSON arrays of strings.
CREATE TABLE keygate_meta (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO keygate_meta (name, value) VALUES ('revision', 0);

CREATE TABLE tenants (
    id                TEXT PRIMARY KEY,
    name              TEXT NOT NULL,
    status            TEXT NOT NULL,
    subscription      TEXT NOT NULL,
    modules           TEXT NOT NULL,
    rate_limit        INTEGER,
    rate_limit_window INTEGER,
    created_at        INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id                TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    name              TEXT NOT NULL,
    prefix            TEXT NOT NULL,
    secret_hash       BLOB NOT NULL UNIQUE,
    scopes            TEXT NOT NULL,
    allowed_origins   TEXT NOT NULL,
    expires_at        INTEGER,
    revoked_at        INTEGER,
    rate_limit        INTEGER,
    rate_limit_window INTEGER,
    created_at        INTEGER NOT NULL,
    last_used_at      INTEGER
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, id);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    algorithm   TEXT NOT NULL,
    private_key BLOB NOT NULL,
    public_key  BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    retired_at  INTEGER
);
