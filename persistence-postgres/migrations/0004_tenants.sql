-- Operations view across tenants, for `persistence status`: which tenants hold data.
-- SECURITY DEFINER like purge_expired (row-level security hides other tenants from the
-- app role); it returns tenant ids only, never stored data.

CREATE FUNCTION persistence.list_tenants() RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT tenant_id FROM persistence.threads
    UNION SELECT tenant_id FROM persistence.sessions
    UNION SELECT tenant_id FROM persistence.items
    UNION SELECT tenant_id FROM persistence.leases
    ORDER BY 1
$$;
REVOKE ALL ON FUNCTION persistence.list_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION persistence.list_tenants() TO persistence_app;

CREATE OR REPLACE FUNCTION persistence.schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 4 $$;
