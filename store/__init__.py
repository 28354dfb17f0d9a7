"""gradq's SQL: typed tables, the engine and session factory, and the queries on them.

SQL is the source of truth for a job's life (DESIGN.md section 1); both service/ and workers/
import this package, neither imports the other.
"""
