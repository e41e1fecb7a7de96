-- Quotas and usage (SPEC §13).

-- A tenant's or key's quota: at most quota_limit requests per UTC calendar quota_period
-- ('day' or 'month'); both NULL when it has none.
ALTER TABLE tenants ADD COLUMN quota_limit BIGINT;
ALTER TABLE tenants ADD COLUMN quota_period TEXT;
ALTER TABLE api_keys ADD COLUMN quota_limit BIGINT;
ALTER TABLE api_keys ADD COLUMN quota_period TEXT;

-- Requests counted per key, per UTC hour (hour_start, Unix milliseconds), per outcome ('OK',
-- 'UPSTREAM_4XX', 'UPSTREAM_5XX' or the code keygate answered with), with the latest of them
-- (last_used_at, Unix milliseconds). Each instance adds what it counted, one batched upsert per
-- flush, its rows sorted in the primary key's order. No row references a key or tenant: a
-- deleted key's usage stays in its tenant's totals.
-- The hour leads the primary key: a flush writes this hour's rows, which lie together at the
-- end of the index however many hours the table holds (led by the key, each of a day's flushes
-- would touch a page per key), and an hour is pruned as one range. A key's or a tenant's hours
-- are read by one probe an hour, the hours listed by usage_hours.
-- Half of a page's room is filled, so that a flush's update of a row (its count and last use,
-- neither indexed) finds room on the row's page: a HOT update, no index touched. At four in
-- five, the first update of an hour's fresh rows found no room for most of them, and took
-- twice as long as the others (docs/performance.md).
CREATE TABLE usage_counts (
    hour_start   BIGINT NOT NULL,
    tenant_id    TEXT NOT NULL,
    key_id       TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    requests     BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    PRIMARY KEY (hour_start, tenant_id, key_id, outcome)
) WITH (fillfactor = 50);

-- The same counts summed over a tenant's keys, written by the same flush (a row per tenant,
-- hour and outcome it saw): a tenant's totals over a month are some hundreds of rows, however
-- many keys it has.
CREATE TABLE tenant_usage_counts (
    hour_start BIGINT NOT NULL,
    tenant_id  TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    requests   BIGINT NOT NULL,
    PRIMARY KEY (hour_start, tenant_id, outcome)
);

-- Every hour that has counts, written by the flush that writes its first. folded_at: when the
-- latest use of each key in the hour was kept in api_keys.last_used_at (NULL until then, and
-- again when a late flush adds to the hour), so that a key's `lastUsedAt` is the greatest of
-- that column and its rows of the hours not folded — a few probes, however long ago it was used.
CREATE TABLE usage_hours (
    hour_start BIGINT PRIMARY KEY,
    folded_at  BIGINT
);
-- The hours not folded (some three), found without reading the others: a key's `lastUsedAt`
-- reads them, with the same condition.
CREATE INDEX usage_hours_open ON usage_hours (hour_start) WHERE folded_at IS NULL OR folded_at = 0;
