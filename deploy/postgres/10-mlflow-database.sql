-- MLflow keeps its own database: it and gradq both keep an Alembic `alembic_version` table.
-- The official image runs this once, as POSTGRES_USER, when it creates an empty PGDATA.
CREATE DATABASE mlflow;
