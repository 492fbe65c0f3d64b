-- Per-name username counters: the last suffix handed out for each `nome.cognome` base
-- (1 = the bare base, n >= 2 = base || n). `create` bumps the counter and inserts the
-- account in one transaction, so concurrent namesakes each get their own number and a
-- failed insert (e.g. a racing first login of the same person) gives its number back.
-- Bases that already had accounts before this table existed are caught up lazily: an
-- insert that still meets a taken username moves the counter past every suffix in use.
CREATE TABLE username_counters (
    base        TEXT PRIMARY KEY,
    last_suffix BIGINT NOT NULL
);
