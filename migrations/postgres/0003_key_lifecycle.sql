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
