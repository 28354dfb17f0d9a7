"""The Celery names the API and the workers share (service/ never imports workers/)."""

TRAIN_TASK = "gradq.train"  # what the API sends, with the job id, and a worker runs
TRAIN_QUEUE = "celery"  # where it waits: Celery's default queue
