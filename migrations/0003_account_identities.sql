-- Identities: an account has one or more (scheme, subject) pairs it is found by.
-- `spid` and `cie` are keyed by the codice fiscale, `eidas` by the eIDAS
-- PersonIdentifier (`ES/IT/02635542Y`); an eIDAS user has no codice fiscale, so
-- `accounts.fiscal_code` becomes NULLable (still UNIQUE: NULLs are distinct on SQLite
-- and PostgreSQL alike).
--
-- SQLite cannot drop a NOT NULL, so `accounts` is rebuilt the portable way (new table,
-- copy, drop, rename, indexes). sqlx runs each migration in one transaction on both
-- databases, so a failure leaves the previous schema untouched.
CREATE TABLE accounts_v3 (
    id                   TEXT PRIMARY KEY,
    username             TEXT NOT NULL,
    fiscal_code          TEXT,
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

INSERT INTO accounts_v3 (id, username, fiscal_code, given_name, family_name, birth_date,
    birth_place, sex, email, domicile_json, phones_json, id_document_json, recovery_question,
    recovery_answer_hash, cp_hash, temp_cp_hmac, temp_cp_issued_at, temp_cp_expires_at,
    cp_history_json, enablement_state, created_at, updated_at, enabled_at, last_access_at,
    spid_level, spid_code, version)
SELECT id, username, fiscal_code, given_name, family_name, birth_date,
    birth_place, sex, email, domicile_json, phones_json, id_document_json, recovery_question,
    recovery_answer_hash, cp_hash, temp_cp_hmac, temp_cp_issued_at, temp_cp_expires_at,
    cp_history_json, enablement_state, created_at, updated_at, enabled_at, last_access_at,
    spid_level, spid_code, version
FROM accounts;

DROP TABLE accounts;
ALTER TABLE accounts_v3 RENAME TO accounts;

CREATE UNIQUE INDEX accounts_fiscal_code_key ON accounts (fiscal_code);
CREATE UNIQUE INDEX accounts_username_key ON accounts (username);
CREATE INDEX accounts_last_access_idx ON accounts (last_access_at);

-- One row per identity; the primary key decides racing first logins.
CREATE TABLE account_identities (
    scheme        TEXT NOT NULL,
    subject       TEXT NOT NULL,
    account_id    TEXT NOT NULL REFERENCES accounts (id),
    linked_at     TEXT NOT NULL,
    last_login_at TEXT,
    PRIMARY KEY (scheme, subject)
);

CREATE INDEX account_identities_account_idx ON account_identities (account_id);

-- Every account of the previous release was made by a SPID login of its codice fiscale.
INSERT INTO account_identities (scheme, subject, account_id, linked_at, last_login_at)
SELECT 'spid', fiscal_code, id, created_at, last_access_at
FROM accounts
WHERE fiscal_code IS NOT NULL;
