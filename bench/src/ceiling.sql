-- The raw ceilings' scratch tables, in the benchmark's own database (dropped with it).
CREATE SCHEMA bench_ceiling;

-- What the write ceilings insert: one-row transactions (the commands' ceiling) and one
-- multi-row insert (the bulk's). An envelope-sized JSON body per row, one unique index.
CREATE TABLE bench_ceiling.writes (
    id   uuid  PRIMARY KEY,
    body jsonb NOT NULL
);

-- The admins read model's very table (columns, defaults, indexes: the widget's partial index
-- among them), empty, for the ceiling server to page through.
CREATE TABLE bench_ceiling.admins (LIKE proj_admins.admins INCLUDING ALL);
