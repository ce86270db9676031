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

CREATE OR REPLACE FUNCTION persistence.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 8 $$;
