-- Schema 11: store items keep their TTL, and reads can restart it (`refresh_ttl`).
--
-- - `items.ttl_ms`: the TTL of the item's last put or patch, in ms (NULL: none). An item
--   written before this migration has none stored: its TTL is the time from its last
--   write (`updated_at`) to its expiry, which is what it was. `item_put` keeps its
--   signature and now stores it, so libraries of schema 5 to 10 store it as well.
-- - `item_get_refreshed` and `item_search_refreshed` read and move the expiries of the
--   items they return to now + their TTL in one statement; value, version and times
--   stay.
--
-- Only adds: libraries of schema 5 to 10 keep working against it.

ALTER TABLE persistence.items ADD COLUMN IF NOT EXISTS ttl_ms bigint;

-- The TTL a refresh restarts (NULL for an item without expiry).
CREATE FUNCTION persistence.item_ttl_ms(p_ttl_ms bigint, p_updated_at timestamptz, p_expires_at timestamptz)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_expires_at IS NULL THEN NULL
                ELSE coalesce(p_ttl_ms, persistence.ms(p_expires_at) - persistence.ms(p_updated_at)) END
$$;

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
               updated_at = now(), expires_at = v_expires, ttl_ms = p_ttl_ms
            WHERE tenant_id = p_tenant AND namespace = p_namespace AND key = p_key
            RETURNING version INTO v_version;
        IF FOUND THEN
            RETURN v_version;
        END IF;
    END IF;
    IF p_if_version IS NOT NULL AND p_if_version > 0 THEN
        UPDATE persistence.items SET value_version = p_value_version, value = p_value,
               version = version + 1, updated_at = now(), expires_at = v_expires,
               ttl_ms = p_ttl_ms
            WHERE tenant_id = p_tenant AND namespace = p_namespace AND key = p_key
              AND version = p_if_version AND persistence.is_live(expires_at)
            RETURNING version INTO v_version;
    ELSE
        INSERT INTO persistence.items AS i
            (tenant_id, namespace, key, value_version, value, version, created_at, updated_at,
             expires_at, ttl_ms)
            VALUES (p_tenant, p_namespace, p_key, p_value_version, p_value, 1, now(), now(),
                    v_expires, p_ttl_ms)
            ON CONFLICT (tenant_id, namespace, key) DO UPDATE SET
                value_version = EXCLUDED.value_version, value = EXCLUDED.value,
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

-- `item_get`, the live item's TTL restarted first.
CREATE FUNCTION persistence.item_get_refreshed(p_tenant text, p_namespace text[], p_key text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE v_item jsonb;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    UPDATE persistence.items AS i
        SET ttl_ms = persistence.item_ttl_ms(i.ttl_ms, i.updated_at, i.expires_at),
            expires_at = now() + persistence.item_ttl_ms(i.ttl_ms, i.updated_at, i.expires_at)
                                 * interval '1 millisecond'
        WHERE i.tenant_id = p_tenant AND i.namespace = p_namespace AND i.key = p_key
          AND i.expires_at > now()
        RETURNING persistence.item_json(i) INTO v_item;
    IF FOUND THEN
        RETURN v_item;
    END IF;
    -- No expiry (or absent, or expired): a plain read.
    RETURN (SELECT persistence.item_json(i) FROM persistence.items i
            WHERE i.tenant_id = p_tenant AND i.namespace = p_namespace AND i.key = p_key
              AND persistence.is_live(i.expires_at));
END $$;

-- `item_search`, the TTLs of the items it returns restarted in the same statement.
CREATE FUNCTION persistence.item_search_refreshed(
    p_tenant text, p_prefix text[], p_conditions jsonb, p_limit integer, p_offset integer)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE v_items jsonb;
BEGIN
    PERFORM set_config('persistence.tenant', p_tenant, true);
    WITH found AS (
        SELECT i.namespace, i.key FROM persistence.items i
        WHERE i.tenant_id = p_tenant AND persistence.is_live(i.expires_at)
          AND (p_prefix IS NULL OR i.namespace[1:cardinality(p_prefix)] = p_prefix)
          AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(p_conditions) c
                          WHERE NOT coalesce(persistence.matches_condition(i.value, c), false))
        ORDER BY i.namespace, i.key LIMIT p_limit OFFSET p_offset
    ), refreshed AS (
        UPDATE persistence.items AS i
            SET ttl_ms = persistence.item_ttl_ms(i.ttl_ms, i.updated_at, i.expires_at),
                expires_at = now() + persistence.item_ttl_ms(i.ttl_ms, i.updated_at, i.expires_at)
                                     * interval '1 millisecond'
            FROM found f
            WHERE i.tenant_id = p_tenant AND i.namespace = f.namespace AND i.key = f.key
              AND i.expires_at > now()
            RETURNING i.namespace, i.key, persistence.item_json(i) AS item
    ), untimed AS (
        SELECT i.namespace, i.key, persistence.item_json(i) AS item
        FROM persistence.items i JOIN found f ON i.namespace = f.namespace AND i.key = f.key
        WHERE i.tenant_id = p_tenant AND i.expires_at IS NULL
    )
    SELECT coalesce(jsonb_agg(x.item ORDER BY x.namespace, x.key), '[]'::jsonb) INTO v_items
        FROM (SELECT * FROM refreshed UNION ALL SELECT * FROM untimed) x;
    RETURN v_items;
END $$;

CREATE OR REPLACE FUNCTION persistence.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 11 $$;
