-- Schema 12: replacing stored payloads in place, compared with what was read
-- (`Checkpointer::replace_payload`, `SessionLog::replace_event`): what re-encrypting
-- stored rows (the codec's rekey) needs next to live writers.
--
-- Each function updates one payload in one statement, only while it equals the
-- expected one (version and JSON, compared as jsonb), and returns whether it did.
-- Nothing else of the row changes (ids, step, metadata, channel, ordinal, times), so
-- no index or list order moves. An event is replaced only in a live session.
--
-- Only adds: libraries of schema 5 to 11 keep working against it.

CREATE FUNCTION persistence.checkpoint_replace_state(
    p_tenant text, p_thread text, p_checkpoint uuid,
    p_expected_version bigint, p_expected jsonb, p_version bigint, p_state jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    UPDATE persistence.checkpoints SET state_version = p_version, state = p_state
        WHERE tenant_id = p_tenant AND thread_id = p_thread AND checkpoint_id = p_checkpoint
          AND state_version = p_expected_version AND state = p_expected;
    RETURN FOUND;
END $$;

CREATE FUNCTION persistence.pending_write_replace(
    p_tenant text, p_thread text, p_checkpoint uuid, p_task text, p_idx integer,
    p_expected_version bigint, p_expected jsonb, p_version bigint, p_value jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    UPDATE persistence.pending_writes SET value_version = p_version, value = p_value
        WHERE tenant_id = p_tenant AND thread_id = p_thread AND checkpoint_id = p_checkpoint
          AND task_id = p_task AND idx = p_idx
          AND value_version = p_expected_version AND value = p_expected;
    RETURN FOUND;
END $$;

CREATE FUNCTION persistence.session_event_replace(
    p_tenant text, p_session text, p_seq bigint,
    p_expected_version bigint, p_expected jsonb, p_version bigint, p_event jsonb)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    IF (persistence.live_session(p_tenant, p_session)).head IS NULL THEN
        RETURN false;
    END IF;
    UPDATE persistence.session_events SET event_version = p_version, event = p_event
        WHERE tenant_id = p_tenant AND session_id = p_session AND seq = p_seq
          AND event_version = p_expected_version AND event = p_expected;
    RETURN FOUND;
END $$;

CREATE OR REPLACE FUNCTION persistence.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 12 $$;
