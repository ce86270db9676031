-- One function per operation: each sets the transaction-local tenant and acts, so every
-- operation is one statement and one network round trip. Functions run as the caller
-- (SECURITY INVOKER), so row-level security applies inside them; only
-- purge_expired() runs as its owner, and touches nothing but expired rows.
--
-- Errors use custom SQLSTATEs that the Rust side maps to error kinds:
--   PT409 conflict, PT423 fenced, PT404 not found, PT400 invalid input.

CREATE FUNCTION persistence.ms(p_ts timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT (extract(epoch FROM p_ts) * 1000)::bigint $$;

-- Checkpoints ------------------------------------------------------------------------

CREATE FUNCTION persistence.checkpoint_json(c persistence.checkpoints) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', c.checkpoint_id, 'parent', c.parent_id, 'step', c.step,
        'state', jsonb_build_object('schema_version', c.state_version, 'data', c.state),
        'metadata', c.metadata, 'created_at', persistence.ms(c.created_at))
$$;

-- Locks the thread's row (creating it) and checks a fence; returns the stored fence.
CREATE FUNCTION persistence.lock_thread(p_tenant text, p_thread text, p_fence bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_fence bigint;
BEGIN
    INSERT INTO persistence.threads (tenant_id, thread_id) VALUES (p_tenant, p_thread)
        ON CONFLICT DO NOTHING;
    SELECT fence INTO v_fence FROM persistence.threads
        WHERE tenant_id = p_tenant AND thread_id = p_thread FOR UPDATE;
    IF p_fence IS NOT NULL AND p_fence < v_fence THEN
        RAISE EXCEPTION USING ERRCODE = 'PT423',
            MESSAGE = format('fence %s is lower than fence %s already seen', p_fence, v_fence);
    END IF;
    RETURN v_fence;
END $$;

CREATE FUNCTION persistence.raise_fence_thread(p_tenant text, p_thread text, p_old bigint, p_fence bigint)
RETURNS void LANGUAGE sql AS $$
    UPDATE persistence.threads SET fence = p_fence
    WHERE tenant_id = p_tenant AND thread_id = p_thread AND p_fence IS NOT NULL AND p_fence > p_old
$$;

-- p_expect: 0 any, 1 thread must be empty, 2 latest must be p_expect_id.
CREATE FUNCTION persistence.checkpoint_put(
    p_tenant text, p_thread text, p_id uuid, p_parent uuid, p_step bigint,
    p_state_version integer, p_state jsonb, p_metadata jsonb,
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

-- p_id NULL: latest. Returns the checkpoint with its pending writes, or NULL.
CREATE FUNCTION persistence.checkpoint_get(p_tenant text, p_thread text, p_id uuid)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE v_row persistence.checkpoints;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    SELECT * INTO v_row FROM persistence.checkpoints
        WHERE tenant_id = p_tenant AND thread_id = p_thread
          AND (p_id IS NULL OR checkpoint_id = p_id)
        ORDER BY checkpoint_id DESC LIMIT 1;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    RETURN persistence.checkpoint_json(v_row) || jsonb_build_object('writes', coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'task_id', w.task_id, 'index', w.idx, 'channel', w.channel,
                   'value', jsonb_build_object('schema_version', w.value_version, 'data', w.value))
               ORDER BY w.task_id, w.idx)
        FROM persistence.pending_writes w
        WHERE w.tenant_id = p_tenant AND w.thread_id = p_thread
          AND w.checkpoint_id = v_row.checkpoint_id), '[]'::jsonb));
END $$;

-- Newest first, ids below p_upper, metadata keys equal to p_metadata's.
CREATE FUNCTION persistence.checkpoint_list(
    p_tenant text, p_thread text, p_upper uuid, p_limit integer, p_metadata jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    RETURN coalesce((
        SELECT jsonb_agg(persistence.checkpoint_json(c) ORDER BY c.checkpoint_id DESC)
        FROM (SELECT * FROM persistence.checkpoints c
              WHERE c.tenant_id = p_tenant AND c.thread_id = p_thread
                AND (p_upper IS NULL OR c.checkpoint_id < p_upper)
                AND NOT EXISTS (SELECT 1 FROM jsonb_each(p_metadata) f
                                WHERE c.metadata -> f.key IS DISTINCT FROM f.value)
              ORDER BY c.checkpoint_id DESC LIMIT p_limit) c), '[]'::jsonb);
END $$;

-- p_writes: [{"channel": ..., "schema_version": ..., "data": ...}], index = position.
CREATE FUNCTION persistence.checkpoint_put_writes(
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
               (w.e ->> 'schema_version')::integer, w.e -> 'data'
        FROM jsonb_array_elements(p_writes) WITH ORDINALITY AS w(e, ord)
        ON CONFLICT DO NOTHING;
    PERFORM persistence.raise_fence_thread(p_tenant, p_thread, v_old, p_fence);
END $$;

CREATE FUNCTION persistence.checkpoint_delete_thread(p_tenant text, p_thread text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE v_count bigint;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    DELETE FROM persistence.checkpoints WHERE tenant_id = p_tenant AND thread_id = p_thread;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count > 0;
END $$;

CREATE FUNCTION persistence.checkpoint_prune(p_tenant text, p_thread text, p_keep integer)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_count bigint;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    PERFORM persistence.lock_thread(p_tenant, p_thread, NULL);
    DELETE FROM persistence.checkpoints c
        WHERE c.tenant_id = p_tenant AND c.thread_id = p_thread
          AND c.checkpoint_id NOT IN (
              SELECT k.checkpoint_id FROM persistence.checkpoints k
              WHERE k.tenant_id = p_tenant AND k.thread_id = p_thread
              ORDER BY k.checkpoint_id DESC LIMIT p_keep);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END $$;

CREATE FUNCTION persistence.checkpoint_copy_thread(p_tenant text, p_from text, p_to text)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_count bigint;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    -- Lock both rows in a fixed order so opposite copies cannot deadlock.
    PERFORM persistence.lock_thread(p_tenant, least(p_from, p_to), NULL);
    PERFORM persistence.lock_thread(p_tenant, greatest(p_from, p_to), NULL);
    IF NOT EXISTS (SELECT 1 FROM persistence.checkpoints WHERE tenant_id = p_tenant AND thread_id = p_from) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = format('thread %s has no checkpoint', p_from);
    END IF;
    IF EXISTS (SELECT 1 FROM persistence.checkpoints WHERE tenant_id = p_tenant AND thread_id = p_to) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT409', MESSAGE = format('target thread %s is not empty', p_to);
    END IF;
    INSERT INTO persistence.checkpoints
        (tenant_id, thread_id, checkpoint_id, parent_id, step, state_version, state, metadata, created_at)
        SELECT tenant_id, p_to, checkpoint_id, parent_id, step, state_version, state, metadata, created_at
        FROM persistence.checkpoints WHERE tenant_id = p_tenant AND thread_id = p_from;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    INSERT INTO persistence.pending_writes
        (tenant_id, thread_id, checkpoint_id, task_id, idx, channel, value_version, value)
        SELECT tenant_id, p_to, checkpoint_id, task_id, idx, channel, value_version, value
        FROM persistence.pending_writes WHERE tenant_id = p_tenant AND thread_id = p_from;
    RETURN v_count;
END $$;

-- Distinct thread ids straight from the checkpoints' primary key, one index probe per
-- thread (a "loose index scan"), so listing never reads a thread's checkpoints.
CREATE FUNCTION persistence.checkpoint_list_threads(p_tenant text, p_after text, p_limit integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    RETURN coalesce((
        WITH RECURSIVE t(thread_id) AS (
            (SELECT c.thread_id FROM persistence.checkpoints c
             WHERE c.tenant_id = p_tenant AND (p_after IS NULL OR c.thread_id > p_after)
             ORDER BY c.thread_id LIMIT 1)
            UNION ALL
            SELECT (SELECT c.thread_id FROM persistence.checkpoints c
                    WHERE c.tenant_id = p_tenant AND c.thread_id > t.thread_id
                    ORDER BY c.thread_id LIMIT 1)
            FROM t WHERE t.thread_id IS NOT NULL
        )
        SELECT jsonb_agg(x.thread_id ORDER BY x.thread_id)
        FROM (SELECT thread_id FROM t WHERE thread_id IS NOT NULL LIMIT p_limit) x), '[]'::jsonb);
END $$;

-- Sessions ---------------------------------------------------------------------------

-- Locks the session's row (creating it), resetting it first if it has expired.
CREATE FUNCTION persistence.lock_session(p_tenant text, p_session text)
RETURNS persistence.sessions LANGUAGE plpgsql AS $$
DECLARE v_row persistence.sessions;
BEGIN
    INSERT INTO persistence.sessions (tenant_id, session_id) VALUES (p_tenant, p_session)
        ON CONFLICT DO NOTHING;
    SELECT * INTO v_row FROM persistence.sessions
        WHERE tenant_id = p_tenant AND session_id = p_session FOR UPDATE;
    IF v_row.expires_at IS NOT NULL AND v_row.expires_at <= now() THEN
        DELETE FROM persistence.session_events WHERE tenant_id = p_tenant AND session_id = p_session;
        UPDATE persistence.sessions SET head = 0, expires_at = NULL
            WHERE tenant_id = p_tenant AND session_id = p_session RETURNING * INTO v_row;
    END IF;
    RETURN v_row;
END $$;

CREATE FUNCTION persistence.live_session(p_tenant text, p_session text)
RETURNS persistence.sessions LANGUAGE sql STABLE AS $$
    SELECT * FROM persistence.sessions
    WHERE tenant_id = p_tenant AND session_id = p_session AND head > 0
      AND (expires_at IS NULL OR expires_at > now())
$$;

-- p_events: [{"schema_version": ..., "data": ...}]. Returns the new head.
CREATE FUNCTION persistence.session_append(
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
        SELECT p_tenant, p_session, v_row.head + e.ord, (e.v ->> 'schema_version')::integer, e.v -> 'data'
        FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(v, ord);
    UPDATE persistence.sessions SET
        head = v_row.head + v_count,
        expires_at = CASE WHEN p_ttl_ms IS NULL THEN v_row.expires_at
                          ELSE now() + p_ttl_ms * interval '1 millisecond' END,
        fence = greatest(v_row.fence, coalesce(p_fence, 0))
        WHERE tenant_id = p_tenant AND session_id = p_session;
    RETURN v_row.head + v_count;
END $$;

CREATE FUNCTION persistence.session_read(p_tenant text, p_session text, p_after bigint, p_limit integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    IF (persistence.live_session(p_tenant, p_session)).head IS NULL THEN
        RETURN '[]'::jsonb;
    END IF;
    RETURN coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'seq', e.seq, 'appended_at', persistence.ms(e.appended_at),
                   'event', jsonb_build_object('schema_version', e.event_version, 'data', e.event))
               ORDER BY e.seq)
        FROM (SELECT * FROM persistence.session_events
              WHERE tenant_id = p_tenant AND session_id = p_session AND seq > p_after
              ORDER BY seq LIMIT p_limit) e), '[]'::jsonb);
END $$;

CREATE FUNCTION persistence.session_head(p_tenant text, p_session text)
RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    RETURN coalesce((persistence.live_session(p_tenant, p_session)).head, 0);
END $$;

CREATE FUNCTION persistence.session_trim_before(p_tenant text, p_session text, p_seq bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_count bigint;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    IF (persistence.live_session(p_tenant, p_session)).head IS NULL THEN
        RETURN 0;
    END IF;
    DELETE FROM persistence.session_events
        WHERE tenant_id = p_tenant AND session_id = p_session AND seq < p_seq;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END $$;

CREATE FUNCTION persistence.session_delete(p_tenant text, p_session text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE v_row persistence.sessions;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    v_row := persistence.lock_session(p_tenant, p_session);
    DELETE FROM persistence.session_events WHERE tenant_id = p_tenant AND session_id = p_session;
    UPDATE persistence.sessions SET head = 0, expires_at = NULL
        WHERE tenant_id = p_tenant AND session_id = p_session;
    RETURN v_row.head > 0;
END $$;

CREATE FUNCTION persistence.session_list(p_tenant text, p_after text, p_limit integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    RETURN coalesce((
        SELECT jsonb_agg(s.session_id ORDER BY s.session_id)
        FROM (SELECT session_id FROM persistence.sessions
              WHERE tenant_id = p_tenant AND head > 0 AND (expires_at IS NULL OR expires_at > now())
                AND (p_after IS NULL OR session_id > p_after)
              ORDER BY session_id LIMIT p_limit) s), '[]'::jsonb);
END $$;

-- Store ------------------------------------------------------------------------------

CREATE FUNCTION persistence.item_json(i persistence.items) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'namespace', to_jsonb(i.namespace), 'key', i.key,
        'value', jsonb_build_object('schema_version', i.value_version, 'data', i.value),
        'version', i.version, 'created_at', persistence.ms(i.created_at),
        'updated_at', persistence.ms(i.updated_at), 'expires_at', persistence.ms(i.expires_at))
$$;

CREATE FUNCTION persistence.is_live(p_expires_at timestamptz) RETURNS boolean
LANGUAGE sql STABLE AS $$ SELECT p_expires_at IS NULL OR p_expires_at > now() $$;

-- p_if_version: NULL unconditional, 0 must be absent (or expired), n must be version n.
CREATE FUNCTION persistence.item_put(
    p_tenant text, p_namespace text[], p_key text, p_value_version integer, p_value jsonb,
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

CREATE FUNCTION persistence.item_get(p_tenant text, p_namespace text[], p_key text)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    RETURN (SELECT persistence.item_json(i) FROM persistence.items i
            WHERE i.tenant_id = p_tenant AND i.namespace = p_namespace AND i.key = p_key
              AND persistence.is_live(i.expires_at));
END $$;

CREATE FUNCTION persistence.item_delete(p_tenant text, p_namespace text[], p_key text, p_if_version bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE v_row persistence.items; v_current bigint := 0;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    SELECT * INTO v_row FROM persistence.items
        WHERE tenant_id = p_tenant AND namespace = p_namespace AND key = p_key FOR UPDATE;
    IF FOUND AND persistence.is_live(v_row.expires_at) THEN
        v_current := v_row.version;
    END IF;
    IF p_if_version IS NOT NULL AND p_if_version <> v_current THEN
        RAISE EXCEPTION USING ERRCODE = 'PT409',
            MESSAGE = format('expected version %s, found %s', p_if_version, v_current);
    END IF;
    DELETE FROM persistence.items WHERE tenant_id = p_tenant AND namespace = p_namespace AND key = p_key;
    RETURN v_current > 0;
END $$;

CREATE FUNCTION persistence.item_list(
    p_tenant text, p_namespace text[], p_prefix text, p_after text, p_limit integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    RETURN coalesce((
        SELECT jsonb_agg(persistence.item_json(i) ORDER BY i.key)
        FROM (SELECT * FROM persistence.items i
              WHERE i.tenant_id = p_tenant AND i.namespace = p_namespace
                AND starts_with(i.key, coalesce(p_prefix, ''))
                AND (p_after IS NULL OR i.key > p_after) AND persistence.is_live(i.expires_at)
              ORDER BY i.key LIMIT p_limit) i), '[]'::jsonb);
END $$;

CREATE FUNCTION persistence.item_list_namespaces(
    p_tenant text, p_prefix text[], p_depth integer, p_after text[], p_limit integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    RETURN coalesce((
        SELECT jsonb_agg(to_jsonb(n.ns) ORDER BY n.ns)
        FROM (SELECT DISTINCT CASE WHEN p_depth IS NULL THEN i.namespace
                                   ELSE i.namespace[1:p_depth] END AS ns
              FROM persistence.items i
              WHERE i.tenant_id = p_tenant AND persistence.is_live(i.expires_at)
                AND (p_prefix IS NULL OR i.namespace[1:cardinality(p_prefix)] = p_prefix)
              ORDER BY 1) n
        WHERE p_after IS NULL OR n.ns > p_after
        LIMIT p_limit), '[]'::jsonb);
END $$;

-- One condition of a search filter: {"field": ..., "op": "$eq"|..., "value": ...}.
CREATE FUNCTION persistence.matches_condition(p_doc jsonb, p_cond jsonb) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE p_cond ->> 'op'
        WHEN '$eq' THEN coalesce(p_doc -> (p_cond ->> 'field') = p_cond -> 'value', false)
        WHEN '$ne' THEN (p_doc -> (p_cond ->> 'field')) IS DISTINCT FROM p_cond -> 'value'
        ELSE CASE
            WHEN jsonb_typeof(p_doc -> (p_cond ->> 'field')) = 'number'
                 AND jsonb_typeof(p_cond -> 'value') = 'number' THEN
                CASE p_cond ->> 'op'
                    WHEN '$gt' THEN (p_doc ->> (p_cond ->> 'field'))::numeric > (p_cond ->> 'value')::numeric
                    WHEN '$gte' THEN (p_doc ->> (p_cond ->> 'field'))::numeric >= (p_cond ->> 'value')::numeric
                    WHEN '$lt' THEN (p_doc ->> (p_cond ->> 'field'))::numeric < (p_cond ->> 'value')::numeric
                    WHEN '$lte' THEN (p_doc ->> (p_cond ->> 'field'))::numeric <= (p_cond ->> 'value')::numeric
                END
            WHEN jsonb_typeof(p_doc -> (p_cond ->> 'field')) = 'string'
                 AND jsonb_typeof(p_cond -> 'value') = 'string' THEN
                CASE p_cond ->> 'op'
                    WHEN '$gt' THEN (p_doc ->> (p_cond ->> 'field')) COLLATE "C" > (p_cond ->> 'value') COLLATE "C"
                    WHEN '$gte' THEN (p_doc ->> (p_cond ->> 'field')) COLLATE "C" >= (p_cond ->> 'value') COLLATE "C"
                    WHEN '$lt' THEN (p_doc ->> (p_cond ->> 'field')) COLLATE "C" < (p_cond ->> 'value') COLLATE "C"
                    WHEN '$lte' THEN (p_doc ->> (p_cond ->> 'field')) COLLATE "C" <= (p_cond ->> 'value') COLLATE "C"
                END
            ELSE false
        END
    END
$$;

CREATE FUNCTION persistence.item_search(
    p_tenant text, p_prefix text[], p_conditions jsonb, p_limit integer, p_offset integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    RETURN coalesce((
        SELECT jsonb_agg(persistence.item_json(i) ORDER BY i.namespace, i.key)
        FROM (SELECT * FROM persistence.items i
              WHERE i.tenant_id = p_tenant AND persistence.is_live(i.expires_at)
                AND (p_prefix IS NULL OR i.namespace[1:cardinality(p_prefix)] = p_prefix)
                AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(p_conditions) c
                                WHERE NOT coalesce(persistence.matches_condition(i.value, c), false))
              ORDER BY i.namespace, i.key LIMIT p_limit OFFSET p_offset) i), '[]'::jsonb);
END $$;

-- Leases -----------------------------------------------------------------------------

-- Takes a free or expired lock; the fence grows on every new holder. NULL if held.
CREATE FUNCTION persistence.lease_acquire(p_tenant text, p_name text, p_token text, p_ttl_ms bigint)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE v_fence bigint; v_expires timestamptz;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    INSERT INTO persistence.leases AS l (tenant_id, name, token, fence, expires_at)
        VALUES (p_tenant, p_name, p_token, 1, now() + p_ttl_ms * interval '1 millisecond')
        ON CONFLICT (tenant_id, name) DO UPDATE SET
            token = EXCLUDED.token, fence = l.fence + 1, expires_at = EXCLUDED.expires_at
        WHERE l.token IS NULL OR l.expires_at <= now()
        RETURNING fence, expires_at INTO v_fence, v_expires;
    IF v_fence IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN jsonb_build_object('fence', v_fence, 'expires_at', persistence.ms(v_expires));
END $$;

CREATE FUNCTION persistence.lease_renew(p_tenant text, p_name text, p_token text, p_ttl_ms bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_expires timestamptz;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    UPDATE persistence.leases SET expires_at = now() + p_ttl_ms * interval '1 millisecond'
        WHERE tenant_id = p_tenant AND name = p_name AND token = p_token AND expires_at > now()
        RETURNING expires_at INTO v_expires;
    RETURN persistence.ms(v_expires);
END $$;

-- Frees the lock only for the holder's token; true if it was still live.
CREATE FUNCTION persistence.lease_release(p_tenant text, p_name text, p_token text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE v_expires timestamptz; v_found boolean;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    SELECT expires_at, true INTO v_expires, v_found FROM persistence.leases
        WHERE tenant_id = p_tenant AND name = p_name AND token = p_token FOR UPDATE;
    IF v_found IS NULL THEN
        RETURN false;
    END IF;
    UPDATE persistence.leases SET token = NULL, expires_at = NULL
        WHERE tenant_id = p_tenant AND name = p_name;
    RETURN v_expires > now();
END $$;

-- Maintenance ------------------------------------------------------------------------

-- Deletes expired items and empties expired sessions of every tenant. Runs as its owner
-- (the migrator, a superuser or BYPASSRLS role) and touches nothing that has not expired.
CREATE FUNCTION persistence.purge_expired(OUT items bigint, OUT sessions bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM persistence.items WHERE expires_at IS NOT NULL AND expires_at <= now();
    GET DIAGNOSTICS items = ROW_COUNT;
    DELETE FROM persistence.session_events e USING persistence.sessions s
        WHERE e.tenant_id = s.tenant_id AND e.session_id = s.session_id
          AND s.expires_at IS NOT NULL AND s.expires_at <= now();
    UPDATE persistence.sessions SET head = 0, expires_at = NULL
        WHERE expires_at IS NOT NULL AND expires_at <= now() AND head > 0;
    GET DIAGNOSTICS sessions = ROW_COUNT;
END $$;
REVOKE ALL ON FUNCTION persistence.purge_expired() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION persistence.purge_expired() TO persistence_app;

-- The schema version this database is at; the library refuses newer ones.
CREATE FUNCTION persistence.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 3 $$;
