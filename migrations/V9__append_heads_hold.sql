-- A group of appends planned on the heads its process believes (services/store/src/append/
-- pipelined.rs) sends this check, its writes and its COMMIT in one round trip. The check takes
-- the append lock, as every append does, and confirms each head the plan used: the store's last
-- position, each stream's organisation and version (0: no stream yet), each organisation's chain
-- head and last position (0: no event yet). Any difference raises SQLSTATE GH409, which aborts
-- the transaction: nothing of the group is written, and the process writes it again the usual
-- way, reading the heads under the lock.
CREATE FUNCTION append_heads_hold(
    expected_position bigint,
    stream_ids uuid[], stream_orgs uuid[], stream_versions bigint[],
    org_ids uuid[], org_heads bytea[], org_lasts bigint[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    last bigint;
BEGIN
    SELECT last_position INTO last FROM store_head FOR UPDATE;
    IF last IS DISTINCT FROM expected_position THEN
        RAISE EXCEPTION 'the store head is at %, not %', last, expected_position
            USING ERRCODE = 'GH409';
    END IF;
    IF EXISTS (
        SELECT 1
        FROM unnest(stream_ids, stream_orgs, stream_versions) AS x(id, org, version)
        LEFT JOIN streams s ON s.stream_id = x.id
        WHERE CASE WHEN x.version = 0 THEN s.stream_id IS NOT NULL
                   ELSE s.stream_id IS NULL OR s.version <> x.version OR s.org_id <> x.org END
    ) THEN
        RAISE EXCEPTION 'a stream is not at the version assumed' USING ERRCODE = 'GH409';
    END IF;
    IF EXISTS (
        SELECT 1
        FROM unnest(org_ids, org_heads, org_lasts) AS x(id, head, last_position)
        LEFT JOIN org_chains c ON c.org_id = x.id
        WHERE CASE WHEN x.last_position = 0 THEN c.org_id IS NOT NULL
                   ELSE c.org_id IS NULL OR c.last_position <> x.last_position
                        OR c.head <> x.head END
    ) THEN
        RAISE EXCEPTION 'an organisation''s chain is not at the head assumed'
            USING ERRCODE = 'GH409';
    END IF;
END;
$$;
