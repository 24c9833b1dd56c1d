-- The mailer's claim (services/mailer/src/ledger.rs) as one function, so that a claim is one
-- statement and one round trip rather than eight (begin, lock, four reads and writes, commit).
-- Called on its own, it is its own transaction: what it decides is committed before the caller
-- sends anything.
--
-- In one transaction, serialised per admin by an advisory lock: the ledger row of (event, kind)
-- is read; a settled row (`sent`, `skipped`, `unknown`) is left as it is; a row found `sending`
-- (a send was interrupted) becomes `unknown`; otherwise, unless something stops the email (a
-- reason given by the caller, no live address, the rate limit), the row becomes `sending` with
-- one more attempt and, for a Set Up MFA email, the link's hash is stored.
--
-- Each statement of a volatile function takes a new snapshot: the reads after the lock see
-- every claim committed before it, which the rate limit needs.
CREATE FUNCTION mail_claim(
    p_event_id   uuid,
    p_kind       text,
    p_admin_id   uuid,
    p_org_id     uuid,
    p_message_id text,
    p_skip       text,        -- a reason the caller already has not to send, or NULL
    p_token_hash bytea,       -- the new link's hash, for a Set Up MFA email
    p_expires_at timestamptz, -- the link's expiry, likewise
    p_per_hour   integer,     -- Set Up MFA emails per admin per rolling hour, at most
    p_lock_class integer,
    p_lock_key   integer
) RETURNS TABLE (
    outcome  text,            -- settled, interrupted, skipped or claimed
    settled  text,            -- settled: the row's state
    reason   text,            -- skipped: why
    attempt  integer,         -- claimed: which attempt this is
    address  text             -- claimed: the admin's address
) LANGUAGE plpgsql AS $$
DECLARE
    recent integer;
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock_class, p_lock_key);

    SELECT d.state INTO settled FROM mail_deliveries d
     WHERE d.event_id = p_event_id AND d.kind = p_kind
       FOR UPDATE;
    IF settled IN ('sent', 'skipped', 'unknown') THEN
        outcome := 'settled';
        RETURN NEXT;
        RETURN;
    END IF;
    IF settled = 'sending' THEN
        UPDATE mail_deliveries d
           SET state = 'unknown', detail = 'interrupted while sending; not sent again',
               updated_at = now()
         WHERE d.event_id = p_event_id AND d.kind = p_kind;
        outcome := 'interrupted';
        RETURN NEXT;
        RETURN;
    END IF;

    -- No row yet, or a failed attempt: what may stop the email, in this order.
    reason := p_skip;
    IF reason IS NULL THEN
        SELECT c.email INTO address FROM admin_credentials c
         WHERE c.admin_id = p_admin_id AND c.removed_at IS NULL;
        IF address IS NULL THEN
            reason := 'no recipient';
        END IF;
    END IF;
    IF reason IS NULL AND p_kind = 'setup' THEN
        -- Every email that left or may have left counts; at most `p_per_hour` rows are read.
        SELECT count(*) INTO recent FROM (
            SELECT 1 FROM mail_deliveries d
             WHERE d.admin_id = p_admin_id AND d.kind = 'setup'
               AND d.state IN ('sending', 'sent', 'unknown')
               AND d.created_at > now() - interval '1 hour' AND d.event_id <> p_event_id
             LIMIT p_per_hour
        ) counted;
        IF recent >= p_per_hour THEN
            reason := 'rate limited';
        END IF;
    END IF;
    IF reason IS NOT NULL THEN
        INSERT INTO mail_deliveries AS d (event_id, kind, admin_id, state, attempts, message_id, detail)
        VALUES (p_event_id, p_kind, p_admin_id, 'skipped', 0, p_message_id, reason)
        ON CONFLICT (event_id, kind) DO UPDATE
           SET state = 'skipped', detail = EXCLUDED.detail, updated_at = now();
        outcome := 'skipped';
        address := NULL;
        RETURN NEXT;
        RETURN;
    END IF;

    -- A retry replaces the token, so an undelivered one never works.
    IF p_kind = 'setup' THEN
        INSERT INTO mfa_setup_links (token_hash, event_id, admin_id, org_id, expires_at)
        VALUES (p_token_hash, p_event_id, p_admin_id, p_org_id, p_expires_at)
        ON CONFLICT (event_id) DO UPDATE
           SET token_hash = EXCLUDED.token_hash, expires_at = EXCLUDED.expires_at;
    END IF;
    INSERT INTO mail_deliveries AS d (event_id, kind, admin_id, state, attempts, message_id, detail)
    VALUES (p_event_id, p_kind, p_admin_id, 'sending', 1, p_message_id, NULL)
    ON CONFLICT (event_id, kind) DO UPDATE
       SET state = 'sending', attempts = d.attempts + 1, detail = NULL, updated_at = now()
    RETURNING d.attempts INTO attempt;
    outcome := 'claimed';
    RETURN NEXT;
END
$$;
