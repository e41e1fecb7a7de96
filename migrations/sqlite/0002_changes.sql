-- The change feed: one row per admin write, under the store revision it made. Instances apply
-- exactly these changes to their caches; only the most recent ones are kept.
CREATE TABLE changes (
    revision INTEGER PRIMARY KEY,
    kind     TEXT NOT NULL,   -- 'key', 'tenant' or 'signing_key'
    subject  TEXT NOT NULL,   -- its id
    key_hash BLOB             -- a key's secret hash, so caches can drop it by hash
);
