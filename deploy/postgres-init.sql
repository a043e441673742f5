-- The service's own role: it logs in, owns the `backorder` schema (so its migrations may create
-- and alter tables there) and nothing else: no superuser, no CREATEDB, no CREATEROLE, no
-- objects in `public`. Run once by the database superuser on a fresh database, with psql:
--   psql -v ON_ERROR_STOP=1 -v app_role=backorder -v app_password=... -d backorder -f postgres-init.sql
-- (docker compose runs it through postgres-init.sh on the first start of the `db` volume).
-- The service then connects with DATABASE_URL=postgresql://backorder:<password>@db/backorder.

CREATE ROLE :"app_role" LOGIN PASSWORD :'app_password'
    NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;

-- Other roles of the cluster may not even connect to this database; PUBLIC loses `public`.
REVOKE ALL ON DATABASE :"DBNAME" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"DBNAME" TO :"app_role";
REVOKE ALL ON SCHEMA public FROM PUBLIC;

CREATE SCHEMA backorder AUTHORIZATION :"app_role";
ALTER ROLE :"app_role" IN DATABASE :"DBNAME" SET search_path = backorder;
