"""The Celery app's configuration, read from the settings."""

import importlib
import sys

import pytest

from settings import REDIS_VISIBILITY_TIMEOUT_SECONDS, Settings
from workers.celery_app import make_app, skip_absent_databricks_probes


def test_the_app_speaks_json_keeps_no_results_and_acknowledges_late(tmp_path):
    conf = make_app(Settings(home=tmp_path, broker_url="redis://127.0.0.1:6379/0")).conf

    assert (conf.task_serializer, conf.result_serializer) == ("json", "json")
    assert list(conf.accept_content) == ["json"]
    assert conf.task_ignore_result and conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options["visibility_timeout"] == REDIS_VISIBILITY_TIMEOUT_SECONDS
    assert REDIS_VISIBILITY_TIMEOUT_SECONDS >= 24 * 3600
    assert "workers.tasks" in conf.include


def test_the_filesystem_broker_shares_one_queue_folder_with_the_api(tmp_path):
    settings = Settings(home=tmp_path, broker_polling_seconds=0.02)

    conf = make_app(settings).conf

    assert conf.broker_url == "filesystem://"
    options = conf.broker_transport_options
    queue = settings.broker_folder / "queue"
    assert options["data_folder_in"] == options["data_folder_out"] == str(queue)
    assert options["processed_folder"] == str(settings.broker_folder / "processed")
    assert options["polling_interval"] == 0.02
    assert queue.is_dir() and (settings.broker_folder / "processed").is_dir()


def test_absent_databricks_probes_fail_at_once_and_installed_modules_are_left_alone(monkeypatch):
    absent, installed = "gradq_test_no_such_module", "colorsys"
    monkeypatch.delitem(sys.modules, absent, raising=False)
    monkeypatch.delitem(sys.modules, installed, raising=False)

    marked = skip_absent_databricks_probes((absent, installed))

    try:
        assert marked == [absent]
        with pytest.raises(ModuleNotFoundError, match="halted"):  # from the mark, no search
            importlib.import_module(absent)
        assert installed not in sys.modules
        assert importlib.import_module(installed).rgb_to_hsv(1, 0, 0) == (0.0, 1.0, 1.0)
    finally:
        sys.modules.pop(absent, None)
