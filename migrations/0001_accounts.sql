-- POLIS accounts. Portable SQL: runs unchanged on SQLite and PostgreSQL through sqlx `Any`.
-- Ids are UUIDs generated in Rust; timestamps are RFC 3339 UTC text with nanoseconds
-- (`2026-01-31T08:15:00.123456789Z`, fixed width, so text order is time order); dates
-- are `YYYY-MM-DD` text. Nested data (domicile, phones, identity document) is JSON text:
-- it is read and written whole with the account and never queried by field.
CREATE TABLE accounts (
    id                   TEXT PRIMARY KEY,
    username             TEXT NOT NULL,
    fiscal_code          TEXT NOT NULL,
    given_name           TEXT NOT NULL,
    family_name          TEXT NOT NULL,
    birth_date           TEXT,
    birth_place          TEXT,
    sex                  TEXT,
    email                TEXT,
    domicile_json        TEXT,
    phones_json          TEXT NOT NULL,
    id_document_json     TEXT,
    recovery_question    TEXT,
    recovery_answer_hash TEXT,
    cp_hash              TEXT,
    temp_cp_hmac         TEXT,
    temp_cp_issued_at    TEXT,
    temp_cp_expires_at   TEXT,
    cp_history_json      TEXT NOT NULL,
    enablement_state     TEXT NOT NULL,
    created_at           TEXT NOT NULL,
    updated_at           TEXT NOT NULL,
    enabled_at           TEXT,
    last_access_at       TEXT,
    spid_level           BIGINT,
    spid_code            TEXT,
    version              BIGINT NOT NULL
);

CREATE UNIQUE INDEX accounts_fiscal_code_key ON accounts (fiscal_code);
CREATE UNIQUE INDEX accounts_username_key ON accounts (username);
CREATE INDEX accounts_last_access_idx ON accounts (last_access_at);
