-- The relay's cursor: the last position whose publish JetStream acknowledged.
CREATE TABLE relay_cursor (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    position  bigint  NOT NULL
);
INSERT INTO relay_cursor (singleton, position) VALUES (true, 0);
