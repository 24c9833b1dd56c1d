-- Credentials live beside the events, never in them. Rows are written in the same transaction
-- as the events that create or remove an admin, so an email is claimed exactly once.

CREATE TABLE admin_credentials (
    admin_id      uuid        PRIMARY KEY,
    org_id        uuid        NOT NULL,
    email         text        NOT NULL,
    role          text        NOT NULL,
    -- argon2id PHC string; NULL until a password is set.
    password_hash text,
    removed_at    timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- One live admin per mailbox, across organisations: login asks only for the email.
CREATE UNIQUE INDEX admin_credentials_email ON admin_credentials (email) WHERE removed_at IS NULL;

CREATE TABLE api_keys (
    key_id     uuid        PRIMARY KEY,
    admin_id   uuid        NOT NULL REFERENCES admin_credentials (admin_id),
    org_id     uuid        NOT NULL,
    -- SHA-256 of the key: keys are 256-bit random, so a fast hash is enough to store them.
    key_hash   bytea       NOT NULL UNIQUE,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX api_keys_by_admin ON api_keys (admin_id);
