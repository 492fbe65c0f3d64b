-- The «condizioni di utilizzo» and privacy «informativa» a person accepted with «Accetto»:
-- JSON text {"version": "<operator's label>", "accepted_at": "<RFC 3339>"}, NULL until then
-- (and for every account enabled before this release, which accepted the texts of its time
-- without a recorded version).
ALTER TABLE accounts ADD COLUMN terms_json TEXT;
