-- Schema 9: sessions with a life cycle.
--
-- - `sessions` records when a session was created, last appended to and closed
--   (`created_at`, `last_append_at`, `closed_at`; NULL for what happened before this
--   migration). A session that expires or is deleted forgets all three, so a session
--   started again under the same id is new and open.
-- - `session_append` refuses a closed live session (`PT410`, the `Closed` kind).
-- - `session_close`, `session_info` and `session_compact` (trim and append in one
--   transaction, under the session row's lock) are new.
--
-- - Live tails: appends, compactions and closes of a session someone follows NOTIFY
--   (channel `persistence_session_changes`, message `tenant/session`: ids only, a
--   tenant id has no '/'). A NOTIFY makes its transaction take a database-wide lock at
--   commit, which would serialize every append; so only sessions with a listener
--   registered (`session_listen`, renewed by the waiting library every 30 s, kept for
--   60 s) in `session_listeners` notify. That table is unlogged (no WAL; a crash empties
--   it and waiters register again). Without a listener an append costs one index probe.
--
-- Only adds: libraries of schema 5 to 8 keep working against it (their appends to a
-- closed session fail `PT410`, which they report as a backend error).

ALTER TABLE persistence.sessions
    ADD COLUMN IF NOT EXISTS created_at timestamptz,
    ADD COLUMN IF NOT EXISTS last_append_at timestamptz,
    ADD COLUMN IF NOT EXISTS closed_at timestamptz;

-- Locks the session's row (creating it), resetting it first if it has expired.
CREATE OR REPLACE FUNCTION persistence.lock_session(p_tenant text, p_session text)
RETURNS persistence.sessions LANGUAGE plpgsql AS $$
DECLARE v_row persistence.sessions;
BEGIN
    INSERT INTO persistence.sessions (tenant_id, session_id) VALUES (p_tenant, p_session)
        ON CONFLICT DO NOTHING;
    SELECT * INTO v_row FROM persistence.sessions
        WHERE tenant_id = p_tenant AND session_id = p_session FOR UPDATE;
    IF v_row.expires_at IS NOT NULL AND v_row.expires_at <= now() THEN
        DELETE FROM persistence.session_events WHERE tenant_id = p_tenant AND session_id = p_session;
        UPDATE persistence.sessions SET head = 0, expires_at = NULL, created_at = NULL,
               last_append_at = NULL, closed_at = NULL
            WHERE tenant_id = p_tenant AND session_id = p_session RETURNING * INTO v_row;
    END IF;
    RETURN v_row;
END $$;

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

-- The info of a live session row (head > 0, not expired) as JSON.
CREATE FUNCTION persistence.session_info_json(p_row persistence.sessions) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN jsonb_build_object(
        'head', p_row.head,
        'oldest', (SELECT e.seq FROM persistence.session_events e
                   WHERE e.tenant_id = p_row.tenant_id AND e.session_id = p_row.session_id
                   ORDER BY e.seq LIMIT 1),
        'created_at', persistence.ms(p_row.created_at),
        'last_append_at', persistence.ms(p_row.last_append_at),
        'expires_at', persistence.ms(p_row.expires_at),
        'closed_at', persistence.ms(p_row.closed_at));
END $$;

-- NULL for an absent session.
CREATE FUNCTION persistence.session_info(p_tenant text, p_session text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE v_row persistence.sessions;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    v_row := persistence.live_session(p_tenant, p_session);
    IF v_row.head IS NULL THEN
        RETURN NULL;
    END IF;
    RETURN persistence.session_info_json(v_row);
END $$;

CREATE FUNCTION persistence.session_close(p_tenant text, p_session text, p_remove_events boolean)
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

-- Removes events through p_through and appends p_events after the head. Returns the
-- new head.
CREATE FUNCTION persistence.session_compact(
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

CREATE OR REPLACE FUNCTION persistence.session_delete(p_tenant text, p_session text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE v_row persistence.sessions;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    v_row := persistence.lock_session(p_tenant, p_session);
    DELETE FROM persistence.session_events WHERE tenant_id = p_tenant AND session_id = p_session;
    UPDATE persistence.sessions SET head = 0, expires_at = NULL, created_at = NULL,
           last_append_at = NULL, closed_at = NULL
        WHERE tenant_id = p_tenant AND session_id = p_session;
    RETURN v_row.head > 0;
END $$;

CREATE OR REPLACE FUNCTION persistence.purge_expired_sessions() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE v_sessions bigint;
BEGIN
    DELETE FROM persistence.session_events e USING persistence.sessions s
        WHERE e.tenant_id = s.tenant_id AND e.session_id = s.session_id
          AND s.expires_at IS NOT NULL AND s.expires_at <= now();
    UPDATE persistence.sessions SET head = 0, expires_at = NULL, created_at = NULL,
           last_append_at = NULL, closed_at = NULL
        WHERE expires_at IS NOT NULL AND expires_at <= now() AND head > 0;
    GET DIAGNOSTICS v_sessions = ROW_COUNT;
    RETURN v_sessions;
END $$;

-- Purges expired sessions as `purge_expired_sessions()` does, naming them:
-- `[[tenant, session], ...]`, for the sweeper's audit events.
CREATE FUNCTION persistence.purge_expired_sessions_named() RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE v_named jsonb;
BEGIN
    DELETE FROM persistence.session_events e USING persistence.sessions s
        WHERE e.tenant_id = s.tenant_id AND e.session_id = s.session_id
          AND s.expires_at IS NOT NULL AND s.expires_at <= now();
    WITH reset AS (
        UPDATE persistence.sessions SET head = 0, expires_at = NULL, created_at = NULL,
               last_append_at = NULL, closed_at = NULL
            WHERE expires_at IS NOT NULL AND expires_at <= now() AND head > 0
            RETURNING tenant_id, session_id)
    SELECT coalesce(jsonb_agg(jsonb_build_array(tenant_id, session_id)
                              ORDER BY tenant_id, session_id), '[]'::jsonb)
        INTO v_named FROM reset;
    RETURN v_named;
END $$;
REVOKE ALL ON FUNCTION persistence.purge_expired_sessions_named() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION persistence.purge_expired_sessions_named() TO persistence_app;

CREATE OR REPLACE FUNCTION persistence.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 9 $$;
