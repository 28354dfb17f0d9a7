"""gradq's stores: SQL (typed tables, the engine and session factory, the queries on them) and
the files both sides keep (uploaded datasets in MLflow's artifacts, crashed processes' scratch).

SQL is the source of truth for a job's life (DESIGN.md section 1); both service/ and workers/
import this package, neither imports the other.
"""
