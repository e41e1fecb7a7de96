-- Quotas and usage (SPEC §13).

-- A tenant's or key's quota: at most quota_limit requests per UTC calendar quota_period
-- ('day' or 'month'); both NULL when it has none.
ALTER TABLE tenants ADD COLUMN quota_limit BIGINT;
ALTER TABLE tenants ADD COLUMN quota_period TEXT;
ALTER TABLE api_keys ADD COLUMN quota_limit BIGINT;
ALTER TABLE api_keys ADD COLUMN quota_period TEXT;

-- Requests counted per key, per UTC hour (hour_start, Unix milliseconds), per outcome ('OK',
-- 'UPSTREAM_4XX', 'UPSTREAM_5XX' or the code keygate answered with), with the latest of them
-- (last_used_at, Unix milliseconds): a key's `lastUsedAt` is the latest of its latest hour's
-- rows, so a flush writes no row of api_keys. Each instance adds what it counted, one batched
-- upsert per flush, its rows sorted in the primary key's order. No row references a key or
-- tenant: a deleted key's usage stays in its tenant's totals. Read by key or by tenant and key
-- through the primary key, over a range of hours; pruned by hour.
-- Four in five of a page's room is filled, so that a flush's update of a row (its count and
-- last use, neither indexed) stays on the row's page: a HOT update, no index touched.
CREATE TABLE usage_counts (
    tenant_id    TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    hour_start   BIGINT NOT NULL,
    outcome      TEXT NOT NULL,
    requests     BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, key_id, hour_start, outcome)
) WITH (fillfactor = 80);
CREATE INDEX usage_counts_by_hour ON usage_counts (hour_start);

-- The same counts summed over a tenant's keys, written by the same flush (a row per tenant,
-- hour and outcome it saw): a tenant's totals over a month are some hundreds of rows, however
-- many keys it has.
CREATE TABLE tenant_usage_counts (
    tenant_id  TEXT NOT NULL,
    hour_start BIGINT NOT NULL,
    outcome    TEXT NOT NULL,
    requests   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, hour_start, outcome)
);
CREATE INDEX tenant_usage_counts_by_hour ON tenant_usage_counts (hour_start);
