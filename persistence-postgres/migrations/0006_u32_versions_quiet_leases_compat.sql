-- Schema 6.
--
-- 1. Payload schema versions are u32 in the contract: the version columns become bigint
--    (an integer column cannot hold 2^31..=u32::MAX), with the functions that take them.
-- 2. A refused lease acquire writes nothing: a held lease is seen by a plain read, so
--    contenders no longer lock the row and flush WAL on every failed attempt. New fences
--    are floored at the database clock in microseconds, so the lease row of a lock
--    unused for an hour can be deleted (`purge_stale_leases()`, run by
--    `purge_expired()`) without a later fence ever repeating an earlier one; a release
--    keeps its time in `expires_at` for that.
-- 3. Rolling upgrades: the database records the oldest library schema it stays
--    compatible with (`schema_compatible_from()`), and the applied migrations are
--    readable by the app role through `applied_migrations()`, so a library can tell a
--    newer-but-compatible database from an incompatible one.

ALTER TABLE persistence.checkpoints ALTER COLUMN state_version TYPE bigint;
ALTER TABLE persistence.pending_writes ALTER COLUMN value_version TYPE bigint;
ALTER TABLE persistence.session_events ALTER COLUMN event_version TYPE bigint;
ALTER TABLE persistence.items ALTER COLUMN value_version TYPE bigint;

ALTER TABLE persistence.checkpoints ADD CONSTRAINT checkpoints_state_version_u32
    CHECK (state_version BETWEEN 0 AND 4294967295);
ALTER TABLE persistence.pending_writes ADD CONSTRAINT pending_writes_value_version_u32
    CHECK (value_version BETWEEN 0 AND 4294967295);
ALTER TABLE persistence.session_events ADD CONSTRAINT session_events_event_version_u32
    CHECK (event_version BETWEEN 0 AND 4294967295);
ALTER TABLE persistence.items ADD CONSTRAINT items_value_version_u32
    CHECK (value_version BETWEEN 0 AND 4294967295);

DROP FUNCTION persistence.checkpoint_put(
    text, text, uuid, uuid, bigint, integer, jsonb, jsonb, smallint, uuid, bigint);
-- p_expect: 0 any, 1 thread must be empty, 2 latest must be p_expect_id.
CREATE FUNCTION persistence.checkpoint_put(
    p_tenant text, p_thread text, p_id uuid, p_parent uuid, p_step bigint,
    p_state_version bigint, p_state jsonb, p_metadata jsonb,
    p_expect smallint, p_expect_id uuid, p_fence bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_old bigint;
    v_row persistence.checkpoints;
    v_latest uuid;
    v_created timestamptz;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    IF p_fence IS NULL AND p_expect = 0 THEN
        -- Fast path: nothing to check against the thread's state, so no row lock. A
        -- conflict on the id falls through to the idempotency comparison below.
        INSERT INTO persistence.checkpoints
            (tenant_id, thread_id, checkpoint_id, parent_id, step, state_version, state, metadata)
            VALUES (p_tenant, p_thread, p_id, p_parent, p_step, p_state_version, p_state, p_metadata)
            ON CONFLICT DO NOTHING
            RETURNING created_at INTO v_created;
        IF v_created IS NOT NULL THEN
            RETURN persistence.ms(v_created);
        END IF;
    END IF;
    v_old := persistence.lock_thread(p_tenant, p_thread, p_fence);
    SELECT * INTO v_row FROM persistence.checkpoints
        WHERE tenant_id = p_tenant AND thread_id = p_thread AND checkpoint_id = p_id;
    IF FOUND THEN
        IF v_row.parent_id IS NOT DISTINCT FROM p_parent AND v_row.step = p_step
           AND v_row.state_version = p_state_version AND v_row.state = p_state
           AND v_row.metadata = p_metadata THEN
            RETURN persistence.ms(v_row.created_at);
        END IF;
        RAISE EXCEPTION USING ERRCODE = 'PT409',
            MESSAGE = format('checkpoint %s already exists with other content', p_id);
    END IF;
    IF p_expect <> 0 THEN
        SELECT checkpoint_id INTO v_latest FROM persistence.checkpoints
            WHERE tenant_id = p_tenant AND thread_id = p_thread
            ORDER BY checkpoint_id DESC LIMIT 1;
        IF (p_expect = 1 AND v_latest IS NOT NULL)
           OR (p_expect = 2 AND v_latest IS DISTINCT FROM p_expect_id) THEN
            RAISE EXCEPTION USING ERRCODE = 'PT409',
                MESSAGE = format('expected latest checkpoint %s, found %s',
                                 coalesce(p_expect_id::text, 'none'), coalesce(v_latest::text, 'none'));
        END IF;
    END IF;
    PERFORM persistence.raise_fence_thread(p_tenant, p_thread, v_old, p_fence);
    INSERT INTO persistence.checkpoints
        (tenant_id, thread_id, checkpoint_id, parent_id, step, state_version, state, metadata)
        VALUES (p_tenant, p_thread, p_id, p_parent, p_step, p_state_version, p_state, p_metadata)
        RETURNING * INTO v_row;
    RETURN persistence.ms(v_row.created_at);
END $$;

-- p_writes: [{"channel": ..., "schema_version": ..., "data": ...}], index = position.
CREATE OR REPLACE FUNCTION persistence.checkpoint_put_writes(
    p_tenant text, p_thread text, p_id uuid, p_task text, p_writes jsonb, p_fence bigint)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE v_old bigint;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    v_old := persistence.lock_thread(p_tenant, p_thread, p_fence);
    IF NOT EXISTS (SELECT 1 FROM persistence.checkpoints
                   WHERE tenant_id = p_tenant AND thread_id = p_thread AND checkpoint_id = p_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('checkpoint %s does not exist', p_id);
    END IF;
    INSERT INTO persistence.pending_writes
        (tenant_id, thread_id, checkpoint_id, task_id, idx, channel, value_version, value)
        SELECT p_tenant, p_thread, p_id, p_task, (w.ord - 1)::integer, w.e ->> 'channel',
               (w.e ->> 'schema_version')::bigint, w.e -> 'data'
        FROM jsonb_array_elements(p_writes) WITH ORDINALITY AS w(e, ord)
        ON CONFLICT DO NOTHING;
    PERFORM persistence.raise_fence_thread(p_tenant, p_thread, v_old, p_fence);
END $$;

-- p_events: [{"schema_version": ..., "data": ...}]. Returns the new head.
CREATE OR REPLACE FUNCTION persistence.session_append(
    p_tenant text, p_session text, p_events jsonb, p_expect_head bigint, p_fence bigint,
    p_ttl_ms bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_row persistence.sessions;
    v_count bigint := jsonb_array_length(p_events);
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    v_row := persistence.lock_session(p_tenant, p_session);
    IF p_fence IS NOT NULL AND p_fence < v_row.fence THEN
        RAISE EXCEPTION USING ERRCODE = 'PT423',
            MESSAGE = format('fence %s is lower than fence %s already seen', p_fence, v_row.fence);
    END IF;
    IF p_expect_head IS NOT NULL AND p_expect_head <> v_row.head THEN
        RAISE EXCEPTION USING ERRCODE = 'PT409',
            MESSAGE = format('expected head %s, found %s', p_expect_head, v_row.head);
    END IF;
    INSERT INTO persistence.session_events (tenant_id, session_id, seq, event_version, event)
        SELECT p_tenant, p_session, v_row.head + e.ord, (e.v ->> 'schema_version')::bigint, e.v -> 'data'
        FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(v, ord);
    UPDATE persistence.sessions SET
        head = v_row.head + v_count,
        expires_at = CASE WHEN p_ttl_ms IS NULL THEN v_row.expires_at
                          ELSE now() + p_ttl_ms * interval '1 millisecond' END,
        fence = greatest(v_row.fence, coalesce(p_fence, 0))
        WHERE tenant_id = p_tenant AND session_id = p_session;
    RETURN v_row.head + v_count;
END $$;

DROP FUNCTION persistence.item_put(text, text[], text, integer, jsonb, bigint, bigint);
-- p_if_version: NULL unconditional, 0 must be absent (or expired), n must be version n.
CREATE FUNCTION persistence.item_put(
    p_tenant text, p_namespace text[], p_key text, p_value_version bigint, p_value jsonb,
    p_ttl_ms bigint, p_if_version bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_expires timestamptz := CASE WHEN p_ttl_ms IS NULL THEN NULL
                                  ELSE now() + p_ttl_ms * interval '1 millisecond' END;
    v_version bigint;
    v_current bigint;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    IF p_if_version IS NOT NULL AND p_if_version > 0 THEN
        UPDATE persistence.items SET value_version = p_value_version, value = p_value,
               version = version + 1, updated_at = now(), expires_at = v_expires
            WHERE tenant_id = p_tenant AND namespace = p_namespace AND key = p_key
              AND version = p_if_version AND persistence.is_live(expires_at)
            RETURNING version INTO v_version;
    ELSE
        INSERT INTO persistence.items AS i
            (tenant_id, namespace, key, value_version, value, version, created_at, updated_at, expires_at)
            VALUES (p_tenant, p_namespace, p_key, p_value_version, p_value, 1, now(), now(), v_expires)
            ON CONFLICT (tenant_id, namespace, key) DO UPDATE SET
                value_version = EXCLUDED.value_version, value = EXCLUDED.value,
                version = CASE WHEN persistence.is_live(i.expires_at) THEN i.version + 1 ELSE 1 END,
                created_at = CASE WHEN persistence.is_live(i.expires_at) THEN i.created_at ELSE now() END,
                updated_at = now(), expires_at = EXCLUDED.expires_at
            WHERE p_if_version IS NULL OR NOT persistence.is_live(i.expires_at)
            RETURNING version INTO v_version;
    END IF;
    IF v_version IS NULL THEN
        SELECT CASE WHEN persistence.is_live(expires_at) THEN version ELSE 0 END INTO v_current
            FROM persistence.items WHERE tenant_id = p_tenant AND namespace = p_namespace AND key = p_key;
        RAISE EXCEPTION USING ERRCODE = 'PT409',
            MESSAGE = format('expected version %s, found %s', p_if_version, coalesce(v_current, 0));
    END IF;
    RETURN v_version;
END $$;

-- The database clock in microseconds since the epoch: the floor of every new fence.
CREATE FUNCTION persistence.clock_fence() RETURNS bigint
LANGUAGE sql VOLATILE AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint $$;

-- A held, unexpired lease is refused by a read (no row lock, no transaction id, so no
-- WAL flush); only a free or expired lease is written.
CREATE OR REPLACE FUNCTION persistence.lease_acquire(p_tenant text, p_name text, p_token text, p_ttl_ms bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE v_fence bigint; v_expires timestamptz;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    PERFORM 1 FROM persistence.leases
        WHERE tenant_id = p_tenant AND name = p_name AND token IS NOT NULL AND expires_at > now();
    IF FOUND THEN
        RETURN NULL;
    END IF;
    INSERT INTO persistence.leases AS l (tenant_id, name, token, fence, expires_at)
        VALUES (p_tenant, p_name, p_token, persistence.clock_fence(),
                now() + p_ttl_ms * interval '1 millisecond')
        ON CONFLICT (tenant_id, name) DO UPDATE SET
            token = EXCLUDED.token, fence = greatest(l.fence + 1, EXCLUDED.fence),
            expires_at = EXCLUDED.expires_at
        WHERE l.token IS NULL OR l.expires_at <= now()
        RETURNING fence, expires_at INTO v_fence, v_expires;
    IF v_fence IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object('fence', v_fence, 'expires_at', persistence.ms(v_expires));
END $$;

-- Frees the lock only for the holder's token; true if it was still live. The release
-- time stays in expires_at, so purge_stale_leases() can tell how long it was unused.
CREATE OR REPLACE FUNCTION persistence.lease_release(p_tenant text, p_name text, p_token text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE v_expires timestamptz; v_found boolean;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    SELECT expires_at, true INTO v_expires, v_found FROM persistence.leases
        WHERE tenant_id = p_tenant AND name = p_name AND token = p_token FOR UPDATE;
    IF v_found IS NULL THEN
        RETURN false;
    END IF;
    UPDATE persistence.leases SET token = NULL, expires_at = least(expires_at, now())
        WHERE tenant_id = p_tenant AND name = p_name;
    RETURN v_expires > now();
END $$;

-- Deletes lease rows of every tenant unused for an hour (released or expired that long
-- ago, with a fence below the clock floor of an hour ago). A later acquire of the name
-- starts again at the clock floor, above every fence the row ever held. Returns the
-- number deleted.
CREATE FUNCTION persistence.purge_stale_leases() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE v_leases bigint;
BEGIN
    DELETE FROM persistence.leases
        WHERE coalesce(expires_at, '-infinity') <= now() - interval '1 hour'
          AND fence < persistence.clock_fence() - 3600000000;
    GET DIAGNOSTICS v_leases = ROW_COUNT;
    RETURN v_leases;
END $$;
REVOKE ALL ON FUNCTION persistence.purge_stale_leases() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION persistence.purge_stale_leases() TO persistence_app;

CREATE OR REPLACE FUNCTION persistence.purge_expired(OUT items bigint, OUT sessions bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    items := persistence.purge_expired_items();
    sessions := persistence.purge_expired_sessions();
    PERFORM persistence.purge_stale_leases();
END $$;

-- Versions of the migrations applied to this database (sqlx's `_sqlx_migrations`, or
-- none when the migrations were applied another way), readable by the app role.
CREATE FUNCTION persistence.applied_migrations() RETURNS bigint[]
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE v bigint[];
BEGIN
    IF to_regclass('public._sqlx_migrations') IS NULL THEN
        RETURN '{}';
    END IF;
    EXECUTE 'SELECT coalesce(array_agg(version ORDER BY version), ''{}'') '
         || 'FROM public._sqlx_migrations WHERE success' INTO v;
    RETURN v;
END $$;
REVOKE ALL ON FUNCTION persistence.applied_migrations() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION persistence.applied_migrations() TO persistence_app;

-- The oldest library schema version that still works against this database. A migration
-- that breaks older code raises it; one that only adds leaves it.
-- Library schema 5 still works here (it binds versions as integer, which widen to bigint).
CREATE FUNCTION persistence.schema_compatible_from() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 5 $$;

CREATE OR REPLACE FUNCTION persistence.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 6 $$;
