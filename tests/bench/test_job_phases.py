import math

from job_phases import job_phases, median_phases

LOG = """\
[2026-01-01 00:00:00,000: INFO/ForkPoolWorker-1] job aaa succeeded in 0.300 s: data 100 ms, \
gradient check 6 ms, mlflow artifacts 150 ms
[2026-01-01 00:00:01,000: INFO/ForkPoolWorker-2] job bbb succeeded in 0.500 s: data 300 ms, \
gradient check 8 ms, mlflow artifacts 100 ms
[2026-01-01 00:00:02,000: INFO/ForkPoolWorker-1] job ccc failed in 9.000 s: data 9000 ms
[2026-01-01 00:00:03,000: INFO/ForkPoolWorker-1] job aaa is held by another attempt: no-op
"""


def test_job_phases_reads_the_attempt_lines_of_the_wanted_jobs_only():
    phases = job_phases(LOG, ["aaa", "bbb"])
    assert phases == {"total": [300.0, 500.0], "data": [100.0, 300.0],
                      "gradient check": [6.0, 8.0], "mlflow artifacts": [150.0, 100.0]}  # fmt: skip


def test_median_phases_orders_the_largest_first_and_ends_with_the_total():
    medians = median_phases(LOG, ["aaa", "bbb"])
    assert list(medians) == ["data", "mlflow artifacts", "gradient check", "total"]
    assert medians["data"] == 200.0 and medians["total"] == 400.0


def test_no_line_for_the_jobs_gives_a_nan_total():
    assert math.isnan(median_phases(LOG, ["zzz"])["total"])
