-- Every append rewrites the version of each stream it touches. With full pages that new row
-- version lands on another page, so each stream index gains an entry too; with room left on
-- the page the update is a HOT update and the indexes are untouched. Measured on a bench
-- database after 70,001 updates: 260 were HOT; with fillfactor 50 a 10,000-stream update took
-- 55-62 ms instead of 77-134 ms (docs/benchmarks.md). A store that exists already keeps its
-- packed pages until `VACUUM FULL streams` rewrites them; new pages follow the setting.
ALTER TABLE streams SET (fillfactor = 50);
