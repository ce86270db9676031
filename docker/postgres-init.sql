-- Runs once, when the compose Postgres container initializes its data directory.
-- Creates the application role with a development password; `persistence migrate`
-- (as the `postgres` owner) then creates the schema and grants this role DML only.
-- Never use this password outside local development.
CREATE ROLE persistence_app LOGIN PASSWORD 'persistence_app'
    NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
