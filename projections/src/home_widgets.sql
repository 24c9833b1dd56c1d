-- The home_widgets read model: each admin's choice of Home widgets. Run with `search_path` set to
-- the projection's schema, so names here are unqualified.

CREATE TABLE widgets (
    admin_id                             uuid    PRIMARY KEY,
    org_id                               uuid    NOT NULL,
    -- Shown unless the admin turned it off.
    admins_without_mfa_required_visible  boolean NOT NULL DEFAULT true
);

-- The last position applied. Advanced in the same transaction as the changes it covers.
CREATE TABLE checkpoint (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position  bigint  NOT NULL
);
INSERT INTO checkpoint (singleton, position) VALUES (true, 0);
