-- The as-of replay (`GET /audit/admins-without-mfa-required?as_of=T`, `GET /audit/mfa-coverage`,
-- the Home chart) folds an organisation's events up to an instant. Most of a long history is
-- logins, which change nothing the fold reads; this partial index holds only the events that
-- change an Admin object (whatever their version: `.v%`), in the order the fold applies them.
-- Global MFA on/off needs no entry: turning it on also records `mfa_required` for each admin,
-- and turning it off changes no admin. A reset request changes nothing either; the completed
-- enrollment is what clears the lockout.
--
-- The replay's query must repeat this predicate word for word (projections/src/history.rs,
-- `STATE_CHANGING`) for the planner to prove that the index covers it.
CREATE INDEX events_state_by_org_time ON events (org_id, occurred_at, position)
    WHERE event_type LIKE ANY (ARRAY[
        'gatehouse.admin.created.v%',
        'gatehouse.admin.removed.v%',
        'gatehouse.admin.mfa_required.v%',
        'gatehouse.admin.mfa_requirement_removed.v%',
        'gatehouse.admin.mfa_enrollment_completed.v%',
        'gatehouse.admin.mfa_locked.v%'
    ]);
