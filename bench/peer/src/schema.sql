-- The tables postgres-es reads and writes, under its default names (it creates none itself).
-- Its events are keyed by aggregate and sequence: a second writer of the same sequence fails
-- on the primary key, which postgres-es reports as an optimistic-lock conflict.
CREATE TABLE events (
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    sequence bigint NOT NULL CHECK (sequence >= 0),
    event_type text NOT NULL,
    event_version text NOT NULL,
    payload json NOT NULL,
    metadata json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

-- Only the snapshot and aggregate stores use it: the latest folded state of an aggregate.
CREATE TABLE snapshots (
    aggregate_type text NOT NULL,
    aggregate_id text NOT NULL,
    last_sequence bigint NOT NULL CHECK (last_sequence >= 0),
    current_snapshot bigint NOT NULL CHECK (current_snapshot >= 0),
    payload json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);
