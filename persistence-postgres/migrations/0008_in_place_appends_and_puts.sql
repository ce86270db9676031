-- Schema 8.
--
-- The hot writes touch only the rows they must (function bodies and one constraint;
-- libraries of schema 5 to 7 keep working against it):
-- - An append updates its session's row in place, checks (fence, expected head,
--   expiry) in the update's own condition: one index lookup and a HOT update. It was an
--   insert-if-absent, a locking read (a WAL record of its own) and an update. An
--   absent session's row is inserted first; a refused append reads the row locked, to
--   name what it found.
-- - `session_events` loses its foreign key to `sessions`: every event is inserted by
--   `session_append` after it has updated the session's row in the same transaction,
--   and session rows are never deleted (deleting a session resets its head), so the
--   key checked nothing, at the price of one lookup of the session per event.
-- - An unconditional store put of an existing item is a plain update (the upsert's
--   conflict path locked the row, one more WAL record, before updating it); an absent
--   item is still inserted by the upsert, which also covers a concurrent insert.
-- - The writes of a thread that check its state (fenced or guarded checkpoint puts,
--   pending writes, prune, copy) serialize on a transaction-scoped advisory lock
--   (class 1885696627, key hashtext(tenant || '/' || thread)), which the server keeps
--   in memory, instead of locking the thread's row (a WAL record per write). The row
--   now only holds the fence high-water mark, written when a fence raises it. Two
--   threads whose keys collide only wait for each other. Applications' own advisory
--   locks of the two-key form with that class would too.
-- - A guarded put reads the thread's latest id first and looks its own id up only when
--   it is not above the latest (a new UUIDv7 id never is): one lookup fewer.
-- - `list_tenants()` also lists tenants whose only data is checkpoints (unguarded puts
--   create no thread row, so such a tenant was missing from `persistence status`).

ALTER TABLE persistence.session_events
    DROP CONSTRAINT IF EXISTS session_events_tenant_id_session_id_fkey;

CREATE OR REPLACE FUNCTION persistence.session_append(
    p_tenant text, p_session text, p_events jsonb, p_expect_head bigint, p_fence bigint,
    p_ttl_ms bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint := jsonb_array_length(p_events);
    v_head bigint;
    v_row persistence.sessions;
    v_live_head bigint;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    LOOP
        UPDATE persistence.sessions s SET
            head = CASE WHEN s.expires_at <= now() THEN 0 ELSE s.head END + v_count,
            expires_at = CASE WHEN p_ttl_ms IS NOT NULL THEN now() + p_ttl_ms * interval '1 millisecond'
                              WHEN s.expires_at <= now() THEN NULL
                              ELSE s.expires_at END,
            fence = greatest(s.fence, coalesce(p_fence, 0))
            WHERE s.tenant_id = p_tenant AND s.session_id = p_session
              AND (p_fence IS NULL OR p_fence >= s.fence)
              AND (p_expect_head IS NULL
                   OR p_expect_head = CASE WHEN s.expires_at <= now() THEN 0 ELSE s.head END)
            RETURNING s.head INTO v_head;
        EXIT WHEN FOUND;
        INSERT INTO persistence.sessions (tenant_id, session_id) VALUES (p_tenant, p_session)
            ON CONFLICT DO NOTHING;
        CONTINUE WHEN FOUND;
        SELECT * INTO v_row FROM persistence.sessions
            WHERE tenant_id = p_tenant AND session_id = p_session FOR UPDATE;
        v_live_head := CASE WHEN v_row.expires_at <= now() THEN 0 ELSE v_row.head END;
        IF p_fence IS NOT NULL AND p_fence < v_row.fence THEN
            RAISE EXCEPTION USING ERRCODE = 'PT423',
                MESSAGE = format('fence %s is lower than fence %s already seen', p_fence, v_row.fence);
        END IF;
        IF p_expect_head IS NOT NULL AND p_expect_head <> v_live_head THEN
            RAISE EXCEPTION USING ERRCODE = 'PT409',
                MESSAGE = format('expected head %s, found %s', p_expect_head, v_live_head);
        END IF;
    END LOOP;
    IF v_head = v_count THEN
        DELETE FROM persistence.session_events WHERE tenant_id = p_tenant AND session_id = p_session;
    END IF;
    INSERT INTO persistence.session_events (tenant_id, session_id, seq, event_version, event)
        SELECT p_tenant, p_session, v_head - v_count + e.ord, (e.v ->> 'schema_version')::bigint, e.v -> 'data'
        FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(v, ord);
    RETURN v_head;
END $$;

CREATE OR REPLACE FUNCTION persistence.item_put(
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
    IF p_if_version IS NULL THEN
        UPDATE persistence.items AS i SET value_version = p_value_version, value = p_value,
               version = CASE WHEN persistence.is_live(i.expires_at) THEN i.version + 1 ELSE 1 END,
               created_at = CASE WHEN persistence.is_live(i.expires_at) THEN i.created_at ELSE now() END,
               updated_at = now(), expires_at = v_expires
            WHERE tenant_id = p_tenant AND namespace = p_namespace AND key = p_key
            RETURNING version INTO v_version;
        IF FOUND THEN
            RETURN v_version;
        END IF;
    END IF;
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

-- Serializes the writes of one thread that check its state (fenced or guarded puts,
-- pending writes, prune, copy) with a transaction-scoped advisory lock, which the
-- server keeps in memory (a row lock writes a WAL record), then checks a fence against
-- the thread's high-water mark; returns that mark (0 when the thread has none).
CREATE OR REPLACE FUNCTION persistence.lock_thread(p_tenant text, p_thread text, p_fence bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_fence bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(1885696627, hashtext(p_tenant || '/' || p_thread));
    SELECT fence INTO v_fence FROM persistence.threads
        WHERE tenant_id = p_tenant AND thread_id = p_thread;
    v_fence := coalesce(v_fence, 0);
    IF p_fence IS NOT NULL AND p_fence < v_fence THEN
        RAISE EXCEPTION USING ERRCODE = 'PT423',
            MESSAGE = format('fence %s is lower than fence %s already seen', p_fence, v_fence);
    END IF;
    RETURN v_fence;
END $$;

-- Raises the thread's fence high-water mark (creating its row); caller holds lock_thread.
CREATE OR REPLACE FUNCTION persistence.raise_fence_thread(p_tenant text, p_thread text, p_old bigint, p_fence bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_fence IS NOT NULL AND p_fence > p_old THEN
        INSERT INTO persistence.threads AS t (tenant_id, thread_id, fence)
            VALUES (p_tenant, p_thread, p_fence)
            ON CONFLICT (tenant_id, thread_id) DO UPDATE SET fence = greatest(t.fence, EXCLUDED.fence);
    END IF;
END $$;

-- p_expect: 0 any, 1 thread must be empty, 2 latest must be p_expect_id.
CREATE OR REPLACE FUNCTION persistence.checkpoint_put(
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
        -- Fast path: nothing to check against the thread's state, so no lock. A
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
    SELECT checkpoint_id INTO v_latest FROM persistence.checkpoints
        WHERE tenant_id = p_tenant AND thread_id = p_thread
        ORDER BY checkpoint_id DESC LIMIT 1;
    -- An id above the latest cannot exist: only one at or below it is looked up.
    IF p_id <= v_latest THEN
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
    END IF;
    IF (p_expect = 1 AND v_latest IS NOT NULL)
       OR (p_expect = 2 AND v_latest IS DISTINCT FROM p_expect_id) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT409',
            MESSAGE = format('expected latest checkpoint %s, found %s',
                             coalesce(p_expect_id::text, 'none'), coalesce(v_latest::text, 'none'));
    END IF;
    PERFORM persistence.raise_fence_thread(p_tenant, p_thread, v_old, p_fence);
    INSERT INTO persistence.checkpoints
        (tenant_id, thread_id, checkpoint_id, parent_id, step, state_version, state, metadata)
        VALUES (p_tenant, p_thread, p_id, p_parent, p_step, p_state_version, p_state, p_metadata)
        RETURNING created_at INTO v_created;
    RETURN persistence.ms(v_created);
END $$;


CREATE OR REPLACE FUNCTION persistence.list_tenants() RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT tenant_id FROM persistence.threads
    UNION SELECT tenant_id FROM persistence.checkpoints
    UNION SELECT tenant_id FROM persistence.sessions
    UNION SELECT tenant_id FROM persistence.items
    UNION SELECT tenant_id FROM persistence.leases
    ORDER BY 1
$$;

CREATE OR REPLACE FUNCTION persistence.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 8 $$;
