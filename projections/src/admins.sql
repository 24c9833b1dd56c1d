-- The admins read model: one row per live administrator, and per organisation the counts the
-- Home widget shows. Run with `search_path` set to the projection's schema (`proj_admins`, or
-- `proj_admins_next` during a rebuild), so names here are unqualified.

CREATE TABLE admins (
    admin_id           uuid        PRIMARY KEY,
    org_id             uuid        NOT NULL,
    email              text        NOT NULL,
    first_name         text        NOT NULL,
    last_name          text        NOT NULL,
    role               text        NOT NULL,
    -- The time of the admin.created event.
    created_at         timestamptz NOT NULL,
    mfa_required       boolean     NOT NULL,
    -- 'default' | 'admin' | 'global' while required, NULL otherwise.
    requirement_source text,
    enrolled           boolean     NOT NULL DEFAULT false,
    locked             boolean     NOT NULL DEFAULT false
);
-- Keyset pagination of an organisation's admins (ids are UUID v7: creation order).
CREATE INDEX admins_by_org ON admins (org_id, admin_id);
-- The Admins Without MFA Required list.
CREATE INDEX admins_without_mfa_required ON admins (org_id, admin_id) WHERE NOT mfa_required;

-- Counts are maintained as events are applied, so the widget's count is one row read.
CREATE TABLE orgs (
    org_id               uuid    PRIMARY KEY,
    name                 text    NOT NULL,
    global_mfa_required  boolean NOT NULL DEFAULT false,
    admins               integer NOT NULL DEFAULT 0 CHECK (admins >= 0),
    without_mfa_required integer NOT NULL DEFAULT 0 CHECK (without_mfa_required >= 0)
);

-- The last position applied. Advanced in the same transaction as the changes it covers.
CREATE TABLE checkpoint (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position  bigint  NOT NULL
);
INSERT INTO checkpoint (singleton, position) VALUES (true, 0);
