"""What the worker's log says a job's time went to: ``run_job`` ends each attempt with a line
``job <id> <status> in <s> s: <phase> <ms> ms, ...``."""

import re
import statistics
from collections.abc import Iterable

LINE = re.compile(r"job (\w+) (\w+) in ([\d.]+) s: (.*)")
PHASE = re.compile(r"\s*([\w ]+?) (\d+) ms$")


def job_phases(log: str, ids: Iterable[str]) -> dict[str, list[float]]:
    """Milliseconds per phase, and "total", over the attempts of the jobs ``ids`` in ``log``."""
    wanted, out = set(ids), {"total": []}
    for match in LINE.finditer(log):
        job_id, _status, seconds, phases = match.groups()
        if job_id not in wanted:
            continue
        out["total"].append(1000 * float(seconds))
        for part in phases.split(","):
            if phase := PHASE.match(part):
                out.setdefault(phase[1], []).append(float(phase[2]))
    return out


def median_phases(log: str, ids: Iterable[str]) -> dict[str, float]:
    """The median milliseconds of each phase, largest first, "total" last."""
    phases = {name: statistics.median(ms) for name, ms in job_phases(log, ids).items() if ms}
    total = phases.pop("total", float("nan"))
    return {**dict(sorted(phases.items(), key=lambda kv: -kv[1])), "total": total}
