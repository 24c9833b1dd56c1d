-- The audit read model: one AuditRecord (SPEC §5) per event, and the emails of every admin the
-- history has seen. Run with `search_path` set to the projection's schema (`proj_audit`, or
-- `proj_audit_next` during a rebuild), so names here are unqualified.

CREATE TABLE records (
    -- The event's global position: the order of the history and the `search_after` key.
    position        bigint      PRIMARY KEY,
    org_id          uuid        NOT NULL,
    -- The envelope's time.
    occurred_at     timestamptz NOT NULL,
    -- The record's event_type (`admin_update`, …), not the event's.
    event_type      text        NOT NULL,
    -- NULL when the system initiated it.
    initiator_id    uuid,
    -- An admin's id, or the organisation's.
    resource_id     uuid        NOT NULL,
    initiator_email text,
    resource_email  text,
    -- The AuditRecord as the API answers it. `json`, not `jsonb`: it is always read whole and
    -- never queried inside, so it is kept as written (no parse into jsonb's tree per record
    -- written, no serialising again per record read). A model created while it was `jsonb`
    -- stays so until it is rebuilt; audit.rs writes and reads both.
    record          json        NOT NULL
);
-- Keyset pages of an organisation's history, both ways, and each filter with the same order.
CREATE INDEX records_by_org ON records (org_id, position);
CREATE INDEX records_by_time ON records (org_id, occurred_at);
CREATE INDEX records_by_type ON records (org_id, event_type, position);
CREATE INDEX records_by_initiator ON records (org_id, initiator_id, position);
CREATE INDEX records_by_resource ON records (org_id, resource_id, position);
CREATE INDEX records_by_initiator_email ON records (org_id, initiator_email, position);
CREATE INDEX records_by_resource_email ON records (org_id, resource_email, position);

-- Every admin's email from admin.created, kept after the admin is removed so the history still
-- shows who they were.
CREATE TABLE emails (
    admin_id uuid PRIMARY KEY,
    email    text NOT NULL
);

-- The last position applied. Advanced in the same transaction as the changes it covers.
CREATE TABLE checkpoint (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position  bigint  NOT NULL
);
INSERT INTO checkpoint (singleton, position) VALUES (true, 0);
