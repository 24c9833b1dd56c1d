-- Login, TOTP and the Set Up MFA links. Like credentials, these rows live beside the events and
-- never in them: a secret is stored encrypted (TOTP) or as a SHA-256 (tokens), never in clear.

-- An administrator's enrolled TOTP factor. The secret is sealed with GATEHOUSE_SECRET_KEY
-- (authenticated encryption, the admin id as associated data). `last_step` is the last accepted
-- time step: a code is accepted only for a later step, so each code works once.
CREATE TABLE mfa_factors (
    admin_id      uuid        PRIMARY KEY REFERENCES admin_credentials (admin_id),
    org_id        uuid        NOT NULL,
    secret_sealed bytea       NOT NULL,
    last_step     bigint      NOT NULL DEFAULT 0,
    enrolled_at   timestamptz NOT NULL DEFAULT now()
);

-- Set Up MFA links, one per event that called for an email (a requirement or a reset request).
-- Only the token's SHA-256 is stored; the plaintext exists only in the email.
CREATE TABLE mfa_setup_links (
    token_hash            bytea       PRIMARY KEY,
    event_id              uuid        NOT NULL UNIQUE,
    admin_id              uuid        NOT NULL REFERENCES admin_credentials (admin_id),
    org_id                uuid        NOT NULL,
    expires_at            timestamptz NOT NULL,
    -- The secret offered by POST /mfa/setup, sealed; it becomes the factor on completion.
    pending_secret_sealed bytea,
    used_at               timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mfa_setup_links_by_admin ON mfa_setup_links (admin_id);

-- Server-side sessions: the cookie holds a random token, the table its SHA-256. A session is
-- `pending` until Verify Your Identity succeeds (when MFA applies), then `active`.
CREATE TABLE sessions (
    token_hash   bytea       PRIMARY KEY,
    admin_id     uuid        NOT NULL REFERENCES admin_credentials (admin_id),
    org_id       uuid        NOT NULL,
    stage        text        NOT NULL CHECK (stage IN ('pending', 'active')),
    -- Per-session token that HTML forms must echo (CSRF); useless without the cookie.
    csrf_token   text        NOT NULL,
    client_ip    text        NOT NULL,
    user_agent   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX sessions_live_by_admin ON sessions (admin_id) WHERE revoked_at IS NULL;

-- Password failures, per account (`account:<email>`) and per client address (`ip:<addr>`),
-- shared by every API process.
CREATE TABLE login_throttle (
    key           text        PRIMARY KEY,
    failures      integer     NOT NULL,
    window_start  timestamptz NOT NULL,
    blocked_until timestamptz
);

-- The mailer's ledger: one row per email an event calls for. A row is claimed (`sending`) and
-- committed before the message leaves, so a crash never sends it twice (see docs/decisions.md).
CREATE TABLE mail_deliveries (
    event_id   uuid        NOT NULL,
    kind       text        NOT NULL CHECK (kind IN ('setup', 'reset_confirmation')),
    admin_id   uuid        NOT NULL,
    state      text        NOT NULL CHECK (state IN ('sending', 'sent', 'failed', 'skipped', 'unknown')),
    attempts   integer     NOT NULL DEFAULT 0,
    message_id text        NOT NULL,
    detail     text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, kind)
);
CREATE INDEX mail_deliveries_setup_by_admin ON mail_deliveries (admin_id, created_at) WHERE kind = 'setup';

