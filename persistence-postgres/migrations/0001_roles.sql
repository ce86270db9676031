-- The application role: LOGIN, NOSUPERUSER, NOBYPASSRLS, owning nothing, DML only.
-- Roles are cluster-wide, so this is idempotent. Ops set its password separately:
--   ALTER ROLE persistence_app PASSWORD '...';
-- The role running migrations (the "migrator") owns every table and function; it must
-- be a superuser or have BYPASSRLS for `persistence.purge_expired()` to see all tenants.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'persistence_app') THEN
        CREATE ROLE persistence_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS persistence;
GRANT USAGE ON SCHEMA persistence TO persistence_app;
