-- Schema 10: `checkpoint_prune_through`, what retention by age and thread TTL is built on.
--
-- Deletes a thread's checkpoints with ids up to a bound (UUIDv7 ids sort by the time
-- they were minted), their pending writes with them (foreign key cascade), in one
-- statement: a checkpoint put meanwhile has a greater id and stays. The thread row (and
-- its fence high-water mark) stays.
--
-- Only adds: libraries of schema 5 to 9 keep working against it.

CREATE FUNCTION persistence.checkpoint_prune_through(p_tenant text, p_thread text, p_through uuid)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_count bigint;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    DELETE FROM persistence.checkpoints
        WHERE tenant_id = p_tenant AND thread_id = p_thread AND checkpoint_id <= p_through;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END $$;

CREATE OR REPLACE FUNCTION persistence.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 10 $$;
