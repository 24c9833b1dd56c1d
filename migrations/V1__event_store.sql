-- The event store: the system of record. Append-only; one global, gapless position per event.

-- One row holding the last position given. Appends lock it for their whole transaction, so
-- positions are handed out and committed in the same order: a reader that tails
-- `position > last` can never skip an event that commits late.
CREATE TABLE store_head (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_position bigint  NOT NULL
);
INSERT INTO store_head (singleton, last_position) VALUES (true, 0);

CREATE TYPE stream_kind AS ENUM ('org', 'admin');

-- One row a stream: its organisation and current version (optimistic concurrency).
CREATE TABLE streams (
    stream_id uuid        PRIMARY KEY,
    org_id    uuid        NOT NULL,
    kind      stream_kind NOT NULL,
    version   bigint      NOT NULL CHECK (version > 0)
);
CREATE INDEX streams_by_org ON streams (org_id, kind);

CREATE TABLE events (
    position       bigint      PRIMARY KEY,
    org_id         uuid        NOT NULL,
    stream_id      uuid        NOT NULL,
    stream_version bigint      NOT NULL,
    event_id       uuid        NOT NULL UNIQUE,
    event_type     text        NOT NULL,
    occurred_at    timestamptz NOT NULL,
    -- The CloudEvent exactly as published (its canonical JSON is what the chain hashes).
    envelope       jsonb       NOT NULL,
    -- c_n of the organisation's hash chain, SHA-256 (32 bytes).
    chain          bytea       NOT NULL CHECK (length(chain) = 32),
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_by_org ON events (org_id, position);
CREATE INDEX events_by_org_time ON events (org_id, occurred_at);

-- Each organisation's chain head, advanced in the same transaction as its events.
CREATE TABLE org_chains (
    org_id        uuid   PRIMARY KEY,
    head          bytea  NOT NULL CHECK (length(head) = 32),
    last_position bigint NOT NULL,
    events        bigint NOT NULL
);

CREATE FUNCTION events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event store is append-only: % on events is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_refuse_update_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();

CREATE TRIGGER events_refuse_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only();
