-- The help desk's audit log (`/assistenza`): one row per action a support person took on
-- an account — who (their codice fiscale and role), what, when, why (the reason they
-- typed, required). The row is written BEFORE the action runs, with outcome 'started',
-- and then set to 'done' or to the error code that stopped it: an action whose row could
-- not be written is never taken, and a crash in between leaves 'started' (the action may
-- or may not have happened; the account shows which). Rows are never updated otherwise
-- and never deleted. The person sees the 'done' rows in their personal area.
CREATE TABLE helpdesk_audit (
    id          TEXT NOT NULL PRIMARY KEY,
    at          TEXT NOT NULL,
    staff_fiscal_code TEXT NOT NULL,
    staff_role  TEXT NOT NULL,
    action      TEXT NOT NULL,
    account_id  TEXT NOT NULL,
    reason      TEXT NOT NULL,
    outcome     TEXT NOT NULL
);
CREATE INDEX helpdesk_audit_account ON helpdesk_audit (account_id, at);
