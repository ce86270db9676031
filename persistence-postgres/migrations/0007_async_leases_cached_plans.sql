-- Schema 7.
--
-- Lease changes (acquire, renew, release) commit without waiting for their WAL flush
-- (`synchronous_commit = off` for that transaction only). Every other write still waits.
--
-- What a crash or an immediate shutdown can then lose is the last lease changes of up to
-- three times `wal_writer_delay` (200 ms by default) before it; nothing else:
-- - A lost acquire or renew leaves the lock free (or expiring earlier) after the
--   restart, so another worker can take it while its earlier holder still believes it
--   holds it. The new holder's fence is above the lost one: fences are floored at the
--   database clock in microseconds (0006), and every fence handed out before was at
--   most the clock of its moment. Once the new holder writes, the earlier holder's
--   fenced writes are refused.
-- - A lost release leaves the lock held until its TTL runs out.
-- - A lease whose fence an acknowledged write used is never lost: that write waited for
--   the WAL flush, which covers every earlier record, the lease's included.
-- The same holds across a failover to a synchronous standby, which also stops waiting
-- for lease changes.
--
-- Only a transaction that has written nothing else turns synchronous commit off (the
-- library calls each lease function as a statement of its own).
--
-- Release is one statement (it was a locking read and an update).
--
-- No SQL-language function is executed per operation any more: one that the planner
-- does not inline is parsed and planned again in every transaction. `ms()` was
-- declared IMMUTABLE over a STABLE body (so never inlined, tens of microseconds a call,
-- several calls per operation); `live_session()` and `raise_fence_thread()` are not
-- inlinable and become PL/pgSQL, whose plans are cached per connection.
--
-- Function bodies only: libraries of schema 5 and 6 keep working against it.

CREATE OR REPLACE FUNCTION persistence.ms(p_ts timestamptz) RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT (extract(epoch FROM p_ts) * 1000)::bigint $$;

CREATE OR REPLACE FUNCTION persistence.live_session(p_tenant text, p_session text)
RETURNS persistence.sessions LANGUAGE plpgsql STABLE AS $$
DECLARE v_row persistence.sessions;
BEGIN
    SELECT * INTO v_row FROM persistence.sessions
        WHERE tenant_id = p_tenant AND session_id = p_session AND head > 0
          AND (expires_at IS NULL OR expires_at > now());
    RETURN v_row;
END $$;

CREATE OR REPLACE FUNCTION persistence.raise_fence_thread(p_tenant text, p_thread text, p_old bigint, p_fence bigint)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF p_fence IS NOT NULL AND p_fence > p_old THEN
        UPDATE persistence.threads SET fence = p_fence
            WHERE tenant_id = p_tenant AND thread_id = p_thread;
    END IF;
END $$;

-- Turns off waiting for the WAL flush for the current transaction, when it has written
-- nothing yet (no transaction id assigned).
CREATE FUNCTION persistence.lease_commit_async() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF pg_current_xact_id_if_assigned() IS NULL THEN
        PERFORM set_config('synchronous_commit', 'off', true);
    END IF;
END $$;

-- A held, unexpired lease is refused by a read (no row lock, no transaction id, so no
-- WAL); only a free or expired lease is written.
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
    PERFORM persistence.lease_commit_async();
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

CREATE OR REPLACE FUNCTION persistence.lease_renew(p_tenant text, p_name text, p_token text, p_ttl_ms bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE v_expires timestamptz;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    PERFORM persistence.lease_commit_async();
    UPDATE persistence.leases SET expires_at = now() + p_ttl_ms * interval '1 millisecond'
        WHERE tenant_id = p_tenant AND name = p_name AND token = p_token AND expires_at > now()
        RETURNING expires_at INTO v_expires;
    RETURN persistence.ms(v_expires);
END $$;

-- Frees the lock only for the holder's token; true if it was still live. The release
-- time stays in expires_at, so purge_stale_leases() can tell how long it was unused.
-- The old expiry is read from the row the update locks (the FROM subquery), so a
-- concurrent change cannot come between the two.
CREATE OR REPLACE FUNCTION persistence.lease_release(p_tenant text, p_name text, p_token text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE v_live boolean;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    PERFORM persistence.lease_commit_async();
    UPDATE persistence.leases l SET token = NULL, expires_at = least(l.expires_at, now())
        FROM (SELECT expires_at FROM persistence.leases
              WHERE tenant_id = p_tenant AND name = p_name AND token = p_token
              FOR UPDATE) old
        WHERE l.tenant_id = p_tenant AND l.name = p_name AND l.token = p_token
        RETURNING old.expires_at > now() INTO v_live;
    RETURN coalesce(v_live, false);
END $$;

CREATE OR REPLACE FUNCTION persistence.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 7 $$;
