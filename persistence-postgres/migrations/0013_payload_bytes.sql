-- Schema 13: payload bytes (`Envelope::bytes`, `Capabilities::binary_payloads`) stored
-- raw in a `bytea` beside each payload's `jsonb`: the codec's ciphertext costs its own
-- length, not base64's four thirds.
--
-- Writes take the bytes as base64 under "bytes" in their JSON arguments (appends,
-- compactions, pending writes) or as a `bytea` argument (checkpoint and item puts,
-- replaces: new overloads); reads return them as base64 under "bytes" beside
-- "schema_version" and "data", only when there are some, so rows without bytes read
-- as before.
--
-- Libraries of schema 5 to 12 keep working: their calls go to the old signatures,
-- which now write no bytes (a value they put replaces the bytes too) and compare a
-- payload only when it has none; a row with bytes fails their read (an unknown
-- field), never misreads.

ALTER TABLE persistence.checkpoints ADD COLUMN state_bytes bytea;
ALTER TABLE persistence.pending_writes ADD COLUMN value_bytes bytea;
ALTER TABLE persistence.session_events ADD COLUMN event_bytes bytea;
ALTER TABLE persistence.items ADD COLUMN value_bytes bytea;

-- An envelope as JSON: "bytes" (base64, one line) only when there are some. STABLE
-- like jsonb_build_object, so the planner inlines it.
CREATE FUNCTION persistence.envelope_json(p_version bigint, p_data jsonb, p_bytes bytea)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN p_bytes IS NULL
                THEN jsonb_build_object('schema_version', p_version, 'data', p_data)
                ELSE jsonb_build_object('schema_version', p_version, 'data', p_data,
                                        'bytes', translate(encode(p_bytes, 'base64'), E'\n', ''))
           END
$$;


CREATE OR REPLACE FUNCTION persistence.checkpoint_json(c persistence.checkpoints) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', c.checkpoint_id, 'parent', c.parent_id, 'step', c.step,
        'state', persistence.envelope_json(c.state_version, c.state, c.state_bytes),
        'metadata', c.metadata, 'created_at', persistence.ms(c.created_at))
$$;

CREATE OR REPLACE FUNCTION persistence.item_json(i persistence.items) RETURNS jsonb
LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'namespace', to_jsonb(i.namespace), 'key', i.key,
        'value', persistence.envelope_json(i.value_version, i.value, i.value_bytes),
        'version', i.version, 'created_at', persistence.ms(i.created_at),
        'updated_at', persistence.ms(i.updated_at), 'expires_at', persistence.ms(i.expires_at))
$$;

CREATE OR REPLACE FUNCTION persistence.checkpoint_get(p_tenant text, p_thread text, p_id uuid)
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
                   'value', persistence.envelope_json(w.value_version, w.value, w.value_bytes))
               ORDER BY w.task_id, w.idx)
        FROM persistence.pending_writes w
        WHERE w.tenant_id = p_tenant AND w.thread_id = p_thread
          AND w.checkpoint_id = v_row.checkpoint_id), '[]'::jsonb));
END $$;

CREATE OR REPLACE FUNCTION persistence.session_read(p_tenant text, p_session text, p_after bigint, p_limit integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    IF (persistence.live_session(p_tenant, p_session)).head IS NULL THEN
        RETURN '[]'::jsonb;
    END IF;
    RETURN coalesce((
        SELECT jsonb_agg(jsonb_build_object(
                   'seq', e.seq, 'appended_at', persistence.ms(e.appended_at),
                   'event', persistence.envelope_json(e.event_version, e.event, e.event_bytes))
               ORDER BY e.seq)
        FROM (SELECT * FROM persistence.session_events
              WHERE tenant_id = p_tenant AND session_id = p_session AND seq > p_after
              ORDER BY seq LIMIT p_limit) e), '[]'::jsonb);
END $$;

-- p_writes: [{"channel", "schema_version", "data", "bytes" (base64, optional)}].
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
        (tenant_id, thread_id, checkpoint_id, task_id, idx, channel, value_version, value, value_bytes)
        SELECT p_tenant, p_thread, p_id, p_task, (w.ord - 1)::integer, w.e ->> 'channel',
               (w.e ->> 'schema_version')::bigint, w.e -> 'data',
               decode(w.e ->> 'bytes', 'base64')
        FROM jsonb_array_elements(p_writes) WITH ORDINALITY AS w(e, ord)
        ON CONFLICT DO NOTHING;
    PERFORM persistence.raise_fence_thread(p_tenant, p_thread, v_old, p_fence);
END $$;

CREATE OR REPLACE FUNCTION persistence.checkpoint_copy_thread(p_tenant text, p_from text, p_to text)
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
        (tenant_id, thread_id, checkpoint_id, parent_id, step, state_version, state, state_bytes, metadata, created_at)
        SELECT tenant_id, p_to, checkpoint_id, parent_id, step, state_version, state, state_bytes, metadata, created_at
        FROM persistence.checkpoints WHERE tenant_id = p_tenant AND thread_id = p_from;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    INSERT INTO persistence.pending_writes
        (tenant_id, thread_id, checkpoint_id, task_id, idx, channel, value_version, value, value_bytes)
        SELECT tenant_id, p_to, checkpoint_id, task_id, idx, channel, value_version, value, value_bytes
        FROM persistence.pending_writes WHERE tenant_id = p_tenant AND thread_id = p_from;
    RETURN v_count;
END $$;

-- p_events: [{"schema_version", "data", "bytes" (base64, optional)}].
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
            fence = greatest(s.fence, coalesce(p_fence, 0)),
            created_at = CASE WHEN s.expires_at <= now() OR s.head = 0 THEN now()
                              ELSE s.created_at END,
            last_append_at = now(),
            closed_at = NULL
            WHERE s.tenant_id = p_tenant AND s.session_id = p_session
              AND (p_fence IS NULL OR p_fence >= s.fence)
              AND (p_expect_head IS NULL
                   OR p_expect_head = CASE WHEN s.expires_at <= now() THEN 0 ELSE s.head END)
              AND (s.closed_at IS NULL OR s.expires_at <= now() OR s.head = 0)
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
        IF v_row.closed_at IS NOT NULL AND v_live_head > 0 THEN
            RAISE EXCEPTION USING ERRCODE = 'PT410',
                MESSAGE = 'the session is closed: it takes no more appends';
        END IF;
    END LOOP;
    IF v_head = v_count THEN
        DELETE FROM persistence.session_events WHERE tenant_id = p_tenant AND session_id = p_session;
    END IF;
    INSERT INTO persistence.session_events (tenant_id, session_id, seq, event_version, event, event_bytes)
        SELECT p_tenant, p_session, v_head - v_count + e.ord, (e.v ->> 'schema_version')::bigint, e.v -> 'data',
               decode(e.v ->> 'bytes', 'base64')
        FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(v, ord);
    PERFORM persistence.session_changed(p_tenant, p_session);
    RETURN v_head;
END $$;

CREATE OR REPLACE FUNCTION persistence.session_compact(
    p_tenant text, p_session text, p_events jsonb, p_expect_head bigint, p_fence bigint,
    p_through bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_count bigint := jsonb_array_length(p_events);
    v_row persistence.sessions;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    SELECT * INTO v_row FROM persistence.sessions
        WHERE tenant_id = p_tenant AND session_id = p_session FOR UPDATE;
    IF p_fence IS NOT NULL AND p_fence < coalesce(v_row.fence, 0) THEN
        RAISE EXCEPTION USING ERRCODE = 'PT423',
            MESSAGE = format('fence %s is lower than fence %s already seen', p_fence, v_row.fence);
    END IF;
    IF NOT FOUND OR v_row.head = 0 OR v_row.expires_at <= now() THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = 'no such session';
    END IF;
    IF p_expect_head IS NOT NULL AND p_expect_head <> v_row.head THEN
        RAISE EXCEPTION USING ERRCODE = 'PT409',
            MESSAGE = format('expected head %s, found %s', p_expect_head, v_row.head);
    END IF;
    IF p_through > v_row.head THEN
        RAISE EXCEPTION USING ERRCODE = 'PT409',
            MESSAGE = format('cannot compact through ordinal %s: the head is %s', p_through, v_row.head);
    END IF;
    IF v_row.closed_at IS NOT NULL THEN
        RAISE EXCEPTION USING ERRCODE = 'PT410',
            MESSAGE = 'the session is closed: it takes no more appends';
    END IF;
    UPDATE persistence.sessions SET head = head + v_count, last_append_at = now(),
           fence = greatest(fence, coalesce(p_fence, 0))
        WHERE tenant_id = p_tenant AND session_id = p_session;
    DELETE FROM persistence.session_events
        WHERE tenant_id = p_tenant AND session_id = p_session AND seq <= p_through;
    INSERT INTO persistence.session_events (tenant_id, session_id, seq, event_version, event, event_bytes)
        SELECT p_tenant, p_session, v_row.head + e.ord, (e.v ->> 'schema_version')::bigint, e.v -> 'data',
               decode(e.v ->> 'bytes', 'base64')
        FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(v, ord);
    PERFORM persistence.session_changed(p_tenant, p_session);
    RETURN v_row.head + v_count;
END $$;

-- `checkpoint_put` with the state's bytes.
CREATE FUNCTION persistence.checkpoint_put(
    p_tenant text, p_thread text, p_id uuid, p_parent uuid, p_step bigint,
    p_state_version bigint, p_state jsonb, p_metadata jsonb,
    p_expect smallint, p_expect_id uuid, p_fence bigint, p_state_bytes bytea)
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
            (tenant_id, thread_id, checkpoint_id, parent_id, step, state_version, state, state_bytes, metadata)
            VALUES (p_tenant, p_thread, p_id, p_parent, p_step, p_state_version, p_state, p_state_bytes, p_metadata)
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
               AND v_row.state_bytes IS NOT DISTINCT FROM p_state_bytes
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
        (tenant_id, thread_id, checkpoint_id, parent_id, step, state_version, state, state_bytes, metadata)
        VALUES (p_tenant, p_thread, p_id, p_parent, p_step, p_state_version, p_state, p_state_bytes, p_metadata)
        RETURNING created_at INTO v_created;
    RETURN persistence.ms(v_created);
END $$;

CREATE OR REPLACE FUNCTION persistence.checkpoint_put(
    p_tenant text, p_thread text, p_id uuid, p_parent uuid, p_step bigint,
    p_state_version bigint, p_state jsonb, p_metadata jsonb,
    p_expect smallint, p_expect_id uuid, p_fence bigint)
RETURNS bigint LANGUAGE sql AS $$
    SELECT persistence.checkpoint_put(p_tenant, p_thread, p_id, p_parent, p_step,
        p_state_version, p_state, p_metadata, p_expect, p_expect_id, p_fence, NULL::bytea)
$$;

-- `item_put` with the value's bytes.
CREATE FUNCTION persistence.item_put(
    p_tenant text, p_namespace text[], p_key text, p_value_version bigint, p_value jsonb,
    p_ttl_ms bigint, p_if_version bigint, p_value_bytes bytea)
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
               value_bytes = p_value_bytes,
               version = CASE WHEN persistence.is_live(i.expires_at) THEN i.version + 1 ELSE 1 END,
               created_at = CASE WHEN persistence.is_live(i.expires_at) THEN i.created_at ELSE now() END,
               updated_at = now(), expires_at = v_expires, ttl_ms = p_ttl_ms
            WHERE tenant_id = p_tenant AND namespace = p_namespace AND key = p_key
            RETURNING version INTO v_version;
        IF FOUND THEN
            RETURN v_version;
        END IF;
    END IF;
    IF p_if_version IS NOT NULL AND p_if_version > 0 THEN
        UPDATE persistence.items SET value_version = p_value_version, value = p_value,
               value_bytes = p_value_bytes,
               version = version + 1, updated_at = now(), expires_at = v_expires,
               ttl_ms = p_ttl_ms
            WHERE tenant_id = p_tenant AND namespace = p_namespace AND key = p_key
              AND version = p_if_version AND persistence.is_live(expires_at)
            RETURNING version INTO v_version;
    ELSE
        INSERT INTO persistence.items AS i
            (tenant_id, namespace, key, value_version, value, value_bytes, version, created_at, updated_at,
             expires_at, ttl_ms)
            VALUES (p_tenant, p_namespace, p_key, p_value_version, p_value, p_value_bytes, 1, now(), now(),
                    v_expires, p_ttl_ms)
            ON CONFLICT (tenant_id, namespace, key) DO UPDATE SET
                value_version = EXCLUDED.value_version, value = EXCLUDED.value,
                value_bytes = EXCLUDED.value_bytes,
                version = CASE WHEN persistence.is_live(i.expires_at) THEN i.version + 1 ELSE 1 END,
                created_at = CASE WHEN persistence.is_live(i.expires_at) THEN i.created_at ELSE now() END,
                updated_at = now(), expires_at = EXCLUDED.expires_at, ttl_ms = EXCLUDED.ttl_ms
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

CREATE OR REPLACE FUNCTION persistence.item_put(
    p_tenant text, p_namespace text[], p_key text, p_value_version bigint, p_value jsonb,
    p_ttl_ms bigint, p_if_version bigint)
RETURNS bigint LANGUAGE sql AS $$
    SELECT persistence.item_put(p_tenant, p_namespace, p_key, p_value_version, p_value,
        p_ttl_ms, p_if_version, NULL::bytea)
$$;

-- The replaces of schema 12, comparing and writing bytes too.
CREATE FUNCTION persistence.checkpoint_replace_state(
    p_tenant text, p_thread text, p_checkpoint uuid,
    p_expected_version bigint, p_expected jsonb, p_expected_bytes bytea,
    p_version bigint, p_state jsonb, p_state_bytes bytea)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    UPDATE persistence.checkpoints
        SET state_version = p_version, state = p_state, state_bytes = p_state_bytes
        WHERE tenant_id = p_tenant AND thread_id = p_thread AND checkpoint_id = p_checkpoint
          AND state_version = p_expected_version AND state = p_expected
          AND state_bytes IS NOT DISTINCT FROM p_expected_bytes;
    RETURN FOUND;
END $$;

CREATE OR REPLACE FUNCTION persistence.checkpoint_replace_state(
    p_tenant text, p_thread text, p_checkpoint uuid,
    p_expected_version bigint, p_expected jsonb, p_version bigint, p_state jsonb)
RETURNS boolean LANGUAGE sql AS $$
    SELECT persistence.checkpoint_replace_state(p_tenant, p_thread, p_checkpoint,
        p_expected_version, p_expected, NULL::bytea, p_version, p_state, NULL::bytea)
$$;

CREATE FUNCTION persistence.pending_write_replace(
    p_tenant text, p_thread text, p_checkpoint uuid, p_task text, p_idx integer,
    p_expected_version bigint, p_expected jsonb, p_expected_bytes bytea,
    p_version bigint, p_value jsonb, p_value_bytes bytea)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    UPDATE persistence.pending_writes
        SET value_version = p_version, value = p_value, value_bytes = p_value_bytes
        WHERE tenant_id = p_tenant AND thread_id = p_thread AND checkpoint_id = p_checkpoint
          AND task_id = p_task AND idx = p_idx
          AND value_version = p_expected_version AND value = p_expected
          AND value_bytes IS NOT DISTINCT FROM p_expected_bytes;
    RETURN FOUND;
END $$;

CREATE OR REPLACE FUNCTION persistence.pending_write_replace(
    p_tenant text, p_thread text, p_checkpoint uuid, p_task text, p_idx integer,
    p_expected_version bigint, p_expected jsonb, p_version bigint, p_value jsonb)
RETURNS boolean LANGUAGE sql AS $$
    SELECT persistence.pending_write_replace(p_tenant, p_thread, p_checkpoint, p_task, p_idx,
        p_expected_version, p_expected, NULL::bytea, p_version, p_value, NULL::bytea)
$$;

CREATE FUNCTION persistence.session_event_replace(
    p_tenant text, p_session text, p_seq bigint,
    p_expected_version bigint, p_expected jsonb, p_expected_bytes bytea,
    p_version bigint, p_event jsonb, p_event_bytes bytea)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    IF (persistence.live_session(p_tenant, p_session)).head IS NULL THEN
        RETURN false;
    END IF;
    UPDATE persistence.session_events
        SET event_version = p_version, event = p_event, event_bytes = p_event_bytes
        WHERE tenant_id = p_tenant AND session_id = p_session AND seq = p_seq
          AND event_version = p_expected_version AND event = p_expected
          AND event_bytes IS NOT DISTINCT FROM p_expected_bytes;
    RETURN FOUND;
END $$;

CREATE OR REPLACE FUNCTION persistence.session_event_replace(
    p_tenant text, p_session text, p_seq bigint,
    p_expected_version bigint, p_expected jsonb, p_version bigint, p_event jsonb)
RETURNS boolean LANGUAGE sql AS $$
    SELECT persistence.session_event_replace(p_tenant, p_session, p_seq,
        p_expected_version, p_expected, NULL::bytea, p_version, p_event, NULL::bytea)
$$;

CREATE OR REPLACE FUNCTION persistence.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 13 $$;

