-- Usage written once (SPEC §13): each part of a flush carries an id its instance drew, and
-- the transaction that writes its counts records the id first. A part whose answer was lost
-- (a dropped connection, a runtime ending at shutdown: its commit done or not) is retried with
-- the same id, and a retry that finds the id recorded writes nothing: counted once, not twice.
-- Ids are kept two days (the hourly fold drops older ones); a part is retried within seconds.
CREATE TABLE usage_flushes (
    id         TEXT PRIMARY KEY,
    written_at BIGINT NOT NULL
);
CREATE INDEX usage_flushes_by_age ON usage_flushes (written_at);
