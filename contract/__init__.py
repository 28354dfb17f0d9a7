"""What the API and the workers agree on without importing each other: the job spec and the
network it builds, the Celery task's name, MLflow's naming rules and the metric budget a run
may log (DESIGN.md sections 4 to 6)."""
