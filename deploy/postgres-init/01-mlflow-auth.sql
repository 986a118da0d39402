-- Run once by the postgres image on an empty data volume (as POSTGRES_USER, in POSTGRES_DB).
-- MLflow's basic-auth app keeps its users and permissions in a database of its own.
CREATE DATABASE mlflow_auth OWNER mlflow;
