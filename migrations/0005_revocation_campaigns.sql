-- The last revocation of an account's enablement (inactivity campaign or help desk):
-- JSON text {"at": "<RFC 3339>", "by": {"kind": "campaign", "name": …} |
-- {"kind": "help_desk", "operator": …}, "reason": "…"}, NULL if never revoked. Shown to
-- the person at their next login; kept when they do the abilitazione again.
ALTER TABLE accounts ADD COLUMN revocation_json TEXT;

-- The inactivity notices: one row per (account, deadline, notice day), written BEFORE
-- the e-mail is handed to the mail server (the primary key refuses a second claim, so a
-- rerun or a second replica sends nothing twice); `sent_at` is set once the mail server
-- took it. A row without `sent_at` is a send a crash interrupted: never retried, listed
-- as unconfirmed by the report. The deadline is a `YYYY-MM-DD` date; a login moves an
-- account's deadline, so its next campaign gets new rows.
CREATE TABLE inactivity_notices (
    account_id  TEXT NOT NULL,
    deadline    TEXT NOT NULL,
    notice_days BIGINT NOT NULL,
    campaign    TEXT NOT NULL,
    claimed_at  TEXT NOT NULL,
    sent_at     TEXT,
    PRIMARY KEY (account_id, deadline, notice_days)
);
