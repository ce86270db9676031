-- purge_expired() removed expired items and sessions together, so a caller purging only
-- one kind (Store::purge_expired, SessionLog::purge_expired) lost the other's count.
-- One function per kind now; purge_expired() (the documented ops job) calls both.
-- All run as their owner and touch nothing but expired rows.

CREATE FUNCTION persistence.purge_expired_items() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE v_items bigint;
BEGIN
    DELETE FROM persistence.items WHERE expires_at IS NOT NULL AND expires_at <= now();
    GET DIAGNOSTICS v_items = ROW_COUNT;
    RETURN v_items;
END $$;
REVOKE ALL ON FUNCTION persistence.purge_expired_items() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION persistence.purge_expired_items() TO persistence_app;

-- An expired session's events go; its row stays with head 0 (its fence is kept).
CREATE FUNCTION persistence.purge_expired_sessions() RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE v_sessions bigint;
BEGIN
    DELETE FROM persistence.session_events e USING persistence.sessions s
        WHERE e.tenant_id = s.tenant_id AND e.session_id = s.session_id
          AND s.expires_at IS NOT NULL AND s.expires_at <= now();
    UPDATE persistence.sessions SET head = 0, expires_at = NULL
        WHERE expires_at IS NOT NULL AND expires_at <= now() AND head > 0;
    GET DIAGNOSTICS v_sessions = ROW_COUNT;
    RETURN v_sessions;
END $$;
REVOKE ALL ON FUNCTION persistence.purge_expired_sessions() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION persistence.purge_expired_sessions() TO persistence_app;

CREATE OR REPLACE FUNCTION persistence.purge_expired(OUT items bigint, OUT sessions bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    items := persistence.purge_expired_items();
    sessions := persistence.purge_expired_sessions();
END $$;

CREATE OR REPLACE FUNCTION persistence.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 5 $$;
