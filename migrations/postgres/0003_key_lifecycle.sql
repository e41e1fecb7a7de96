-- Key lifecycle (SPEC §11). A roll gives a key a new current secret (api_keys.secret_hash and
-- prefix) and keeps each earlier one here until its end: presented after it, it answers
-- API_KEY_EXPIRED. The lookup by hash reads both tables, each by its primary key.
CREATE TABLE rolled_secrets (
    secret_hash  BYTEA PRIMARY KEY,
    key_id       TEXT NOT NULL REFERENCES api_keys (id),
    prefix       TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX rolled_secrets_by_key ON rolled_secrets (key_id, expires_at);

-- Finding keys by the start of a display prefix (a support desk's lookup), current or earlier;
-- bytewise, as the lookup compares.
CREATE INDEX api_keys_by_prefix ON api_keys (prefix COLLATE "C");
CREATE INDEX rolled_secrets_by_prefix ON rolled_secrets (prefix COLLATE "C");

-- Metadata an API business keeps beside a tenant or key (a CRM id, a plan name): a JSON object
-- as compact text, returned as given.
ALTER TABLE tenants ADD COLUMN meta TEXT;
ALTER TABLE api_keys ADD COLUMN meta TEXT;

-- The audit log (SPEC §12): one entry per admin write, in the write's transaction. An entry's
-- seq is the revision its change was recorded under, so entries are numbered in commit order.
-- The list is newest first by (made_at, seq); each filter has an index that leads with it, so
-- a page costs the same at a million entries as at ten. No entry references a key or tenant:
-- deleting one keeps its entries.
CREATE TABLE audit_log (
    seq         BIGINT PRIMARY KEY,
    made_at     BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    tenant_id   TEXT,
    target_id   TEXT NOT NULL,
    before_json TEXT,
    after_json  TEXT
);
CREATE INDEX audit_log_by_time ON audit_log (made_at, seq);
CREATE INDEX audit_log_by_tenant ON audit_log (tenant_id, made_at, seq);
CREATE INDEX audit_log_by_target ON audit_log (target_id, made_at, seq);
CREATE INDEX audit_log_by_action ON audit_log (action, made_at, seq);
