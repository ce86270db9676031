-- Schema 11: live tails pushed with LISTEN/NOTIFY, only for sessions someone follows.
--
-- A NOTIFY makes its transaction take a database-wide lock at commit, which would
-- serialize every append; so an append notifies only when its session has a listener
-- registered (`session_listen`, renewed by the waiting library every 30 s, kept for
-- 60 s) in `session_listeners`, an unlogged table (no WAL; emptied by a crash, after
-- which waiters register again). Without one, an append costs one index probe more.
-- The notice (channel `persistence_session_changes`) carries `tenant/session` (a
-- tenant id has no '/'): ids only, never payloads. Appends, compactions and closes
-- notify.
--
-- Only adds: libraries of schema 5 to 10 keep working against it.

CREATE UNLOGGED TABLE persistence.session_listeners (
    tenant_id text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, session_id)
);
ALTER TABLE persistence.session_listeners ENABLE ROW LEVEL SECURITY;
ALTER TABLE persistence.session_listeners FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON persistence.session_listeners FOR ALL TO PUBLIC
    USING (tenant_id = nullif(current_setting('persistence.tenant', true), ''))
    WITH CHECK (tenant_id = nullif(current_setting('persistence.tenant', true), ''));
GRANT SELECT, INSERT, UPDATE, DELETE ON persistence.session_listeners TO persistence_app;

-- Registers (or renews) a listener of a session for p_ttl_ms.
CREATE FUNCTION persistence.session_listen(p_tenant text, p_session text, p_ttl_ms bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    INSERT INTO persistence.session_listeners AS l (tenant_id, session_id, expires_at)
        VALUES (p_tenant, p_session, now() + p_ttl_ms * interval '1 millisecond')
        ON CONFLICT (tenant_id, session_id) DO UPDATE
        SET expires_at = greatest(l.expires_at, excluded.expires_at);
    DELETE FROM persistence.session_listeners
        WHERE tenant_id = p_tenant AND expires_at < now() - interval '1 hour';
END $$;

-- Announces a change of a session when someone listens.
CREATE FUNCTION persistence.session_changed(p_tenant text, p_session text)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM persistence.session_listeners
               WHERE tenant_id = p_tenant AND session_id = p_session AND expires_at > now()) THEN
        PERFORM pg_notify('persistence_session_changes', p_tenant || '/' || p_session);
    END IF;
END $$;

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
    INSERT INTO persistence.session_events (tenant_id, session_id, seq, event_version, event)
        SELECT p_tenant, p_session, v_head - v_count + e.ord, (e.v ->> 'schema_version')::bigint, e.v -> 'data'
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
    INSERT INTO persistence.session_events (tenant_id, session_id, seq, event_version, event)
        SELECT p_tenant, p_session, v_row.head + e.ord, (e.v ->> 'schema_version')::bigint, e.v -> 'data'
        FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(v, ord);
    PERFORM persistence.session_changed(p_tenant, p_session);
    RETURN v_row.head + v_count;
END $$;

CREATE OR REPLACE FUNCTION persistence.session_close(p_tenant text, p_session text, p_remove_events boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE v_row persistence.sessions;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    SELECT * INTO v_row FROM persistence.sessions
        WHERE tenant_id = p_tenant AND session_id = p_session AND head > 0
          AND (expires_at IS NULL OR expires_at > now())
        FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION USING ERRCODE = 'PT404', MESSAGE = 'no such session';
    END IF;
    IF v_row.closed_at IS NULL THEN
        UPDATE persistence.sessions SET closed_at = now()
            WHERE tenant_id = p_tenant AND session_id = p_session RETURNING * INTO v_row;
        IF p_remove_events THEN
            DELETE FROM persistence.session_events
                WHERE tenant_id = p_tenant AND session_id = p_session;
        END IF;
        PERFORM persistence.session_changed(p_tenant, p_session);
    END IF;
    RETURN persistence.session_info_json(v_row);
END $$;

CREATE OR REPLACE FUNCTION persistence.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 11 $$;
