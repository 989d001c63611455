#!/bin/sh
# Run once by the postgres image on an empty data folder: one role and database per service,
# all with the password in RNNFLOW_TEAM_PG_PASSWORD (give each its own in production).
set -eu
for db in mlflow prefect optuna; do
  psql -v ON_ERROR_STOP=1 -U postgres -c "CREATE ROLE $db LOGIN PASSWORD '$RNNFLOW_TEAM_PG_PASSWORD'"
  psql -v ON_ERROR_STOP=1 -U postgres -c "CREATE DATABASE $db OWNER $db"
done
psql -v ON_ERROR_STOP=1 -U postgres -c "CREATE DATABASE mlflow_auth OWNER mlflow"
