"""The artifacts folders that dead worker processes leave in /tmp are removed by the next pool
child; those of live processes, and anything not ours, are left alone."""

import os
import re
import subprocess
import sys

import numpy as np

from contract.spec import JobSpec
from models import Network
from workers import tracking
from workers.artifacts import FirstPart, RunArtifacts
from workers.orphaned_folders import TEMP_PREFIX, remove_orphaned_folders


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_only_the_folders_of_dead_processes_are_removed(tmp_path):
    dead = tmp_path / f"{TEMP_PREFIX}{dead_pid()}-k2_x9a"
    (dead / "before" / "model").mkdir(parents=True)
    (dead / "before" / "spec.json").write_text("{}")
    live = tmp_path / f"{TEMP_PREFIX}{os.getpid()}-ab12cd"
    live.mkdir()
    not_ours = [tmp_path / f"{TEMP_PREFIX}no-pid", tmp_path / "gradq-weights-123-abc"]
    for folder in not_ours:
        folder.mkdir()

    assert remove_orphaned_folders(tmp_path) == [dead]

    assert not dead.exists()
    assert live.is_dir() and all(folder.is_dir() for folder in not_ours)


def test_a_run_s_artifacts_folder_is_named_by_its_process(mlflow_client):
    spec = JobSpec.model_validate({"experiment": "orphans", "dataset": {"name": "faces"}})
    run = tracking.start_run(mlflow_client, experiment="orphans", run_name="r", tags={})
    net = Network([625, 1], output="sigmoid")
    part = FirstPart.of(net, spec, ("non-face", "face"), 10, np.zeros(625))
    uploads = RunArtifacts(mlflow_client, run, part)
    try:
        assert re.fullmatch(rf"{TEMP_PREFIX}{os.getpid()}-\w+", uploads._folder.name)
        assert uploads._folder.is_dir()
    finally:
        uploads.close()
