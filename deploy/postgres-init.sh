#!/bin/sh
# Run by the postgres image on the first start of an empty data volume
# (/docker-entrypoint-initdb.d): makes the service's non-superuser role and its schema.
set -eu
: "${BACKORDER_DB_PASSWORD:?set BACKORDER_DB_PASSWORD}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v app_role=backorder -v app_password="$BACKORDER_DB_PASSWORD" \
    -f /docker-entrypoint-initdb.d/backorder/postgres-init.sql
