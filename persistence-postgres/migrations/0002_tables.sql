-- Every tenant table carries tenant_id first in its primary key, has row-level security
-- enabled AND forced, and one policy for all commands comparing with the transaction's
-- tenant setting. An unset or empty setting matches no row.
-- Text keys use the "C" collation so ordering is bytewise, as the contract defines.

-- One row per fenced or guarded thread: the row locked by its guarded writes and the
-- fence high-water mark (kept when the thread's checkpoints are deleted).
CREATE TABLE persistence.threads (
    tenant_id text COLLATE "C" NOT NULL,
    thread_id text COLLATE "C" NOT NULL,
    fence bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, thread_id)
);

CREATE TABLE persistence.checkpoints (
    tenant_id text COLLATE "C" NOT NULL,
    thread_id text COLLATE "C" NOT NULL,
    checkpoint_id uuid NOT NULL,
    parent_id uuid,
    step bigint NOT NULL,
    state_version integer NOT NULL,
    state jsonb NOT NULL,
    metadata jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, thread_id, checkpoint_id)
);

CREATE TABLE persistence.pending_writes (
    tenant_id text COLLATE "C" NOT NULL,
    thread_id text COLLATE "C" NOT NULL,
    checkpoint_id uuid NOT NULL,
    task_id text COLLATE "C" NOT NULL,
    idx integer NOT NULL,
    channel text NOT NULL,
    value_version integer NOT NULL,
    value jsonb NOT NULL,
    PRIMARY KEY (tenant_id, thread_id, checkpoint_id, task_id, idx),
    FOREIGN KEY (tenant_id, thread_id, checkpoint_id)
        REFERENCES persistence.checkpoints ON DELETE CASCADE
);

-- One row per session: head (last ordinal ever appended; 0 = absent), expiry, fence.
-- Deleting a session resets head and drops events but keeps the row and its fence.
CREATE TABLE persistence.sessions (
    tenant_id text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    head bigint NOT NULL DEFAULT 0,
    expires_at timestamptz,
    fence bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, session_id)
);

CREATE TABLE persistence.session_events (
    tenant_id text COLLATE "C" NOT NULL,
    session_id text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    event_version integer NOT NULL,
    event jsonb NOT NULL,
    appended_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, session_id, seq),
    FOREIGN KEY (tenant_id, session_id) REFERENCES persistence.sessions ON DELETE CASCADE
);

CREATE TABLE persistence.items (
    tenant_id text COLLATE "C" NOT NULL,
    namespace text[] COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    value_version integer NOT NULL,
    value jsonb NOT NULL,
    version bigint NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    expires_at timestamptz,
    PRIMARY KEY (tenant_id, namespace, key)
);
CREATE INDEX items_expiry ON persistence.items (expires_at) WHERE expires_at IS NOT NULL;

-- One row per lock name, kept after release so the fence only grows.
CREATE TABLE persistence.leases (
    tenant_id text COLLATE "C" NOT NULL,
    name text COLLATE "C" NOT NULL,
    token text,
    fence bigint NOT NULL DEFAULT 0,
    expires_at timestamptz,
    PRIMARY KEY (tenant_id, name)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['threads', 'checkpoints', 'pending_writes', 'sessions',
                             'session_events', 'items', 'leases']
    LOOP
        EXECUTE format('ALTER TABLE persistence.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE persistence.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_isolation ON persistence.%I FOR ALL TO PUBLIC '
            'USING (tenant_id = nullif(current_setting(''persistence.tenant'', true), '''')) '
            'WITH CHECK (tenant_id = nullif(current_setting(''persistence.tenant'', true), ''''))',
            t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON persistence.%I TO persistence_app', t);
    END LOOP;
END
$$;
