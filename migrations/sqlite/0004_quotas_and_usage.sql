-- Quotas and usage (SPEC §13).

-- A tenant's or key's quota: at most quota_limit requests per UTC calendar quota_period
-- ('day' or 'month'); both NULL when it has none.
ALTER TABLE tenants ADD COLUMN quota_limit BIGINT;
ALTER TABLE tenants ADD COLUMN quota_period TEXT;
ALTER TABLE api_keys ADD COLUMN quota_limit BIGINT;
ALTER TABLE api_keys ADD COLUMN quota_period TEXT;

-- Requests counted per key, per UTC hour (hour_start, Unix milliseconds), per outcome ('OK',
-- 'UPSTREAM_4XX', 'UPSTREAM_5XX' or the code keygate answered with). Each instance adds what it
-- counted, one batched upsert per flush. No row references a key or tenant: a deleted key's
-- usage stays in its tenant's totals. Read by key (the primary key) or by tenant (its index),
-- over a range of hours; pruned by hour.
CREATE TABLE usage_counts (
    key_id     TEXT NOT NULL,
    hour_start BIGINT NOT NULL,
    outcome    TEXT NOT NULL,
    tenant_id  TEXT NOT NULL,
    requests   BIGINT NOT NULL,
    PRIMARY KEY (key_id, hour_start, outcome)
);
CREATE INDEX usage_counts_by_tenant ON usage_counts (tenant_id, hour_start);
CREATE INDEX usage_counts_by_hour ON usage_counts (hour_start);
