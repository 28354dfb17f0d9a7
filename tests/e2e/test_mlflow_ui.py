"""The MLflow UI as users meet it: `gradq up`, the README's two jobs, then a real browser
(chromium) opens the links the API and the README give and sees the runs, their cost curves,
a run's metrics and its artifacts, in the UI's machine-learning mode (MLflow 3 opens its GenAI
mode by default: traces, "No data available", runs under "Evaluations").

With GRADQ_SCREENSHOTS_DIR set, it saves the screenshots the README shows (docs/screenshots/).
"""

import os
import re
import struct
import tempfile
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient
from playwright.sync_api import expect

from tests.browser import chromium_browser
from tests.e2e.test_make_up import ctrl_c, start_gradq_up, stop_gradq_up, wait_for_status
from tests.processes import REPO
from tests.servers import free_port

pytestmark = pytest.mark.slow

# The README's jobs (its section "Compare runs in the MLflow UI"): one learning rate each.
LEARNING_RATES = (0.005, 0.02)
README_EXPERIMENT_LINK = re.compile(
    r"http://127\.0\.0\.1:5000(/#/experiments/\d+/runs\?workflowType=machine_learning)"
)
SECONDS = 30_000  # Playwright's timeouts are in ms: the UI loads its bundle on a busy machine


def readme_job(learning_rate: float) -> dict:
    return {
        "experiment": "faces-logreg",
        "name": f"lr-{learning_rate}",
        "dataset": {"name": "faces"},
        "model": {"hidden_layers": []},
        "training": {"learning_rate": learning_rate, "epochs": 2000},
    }


@pytest.fixture(scope="module")
def browser():
    with chromium_browser() as browser:  # skips (fails under CI=true) before the stack starts
        yield browser


@pytest.fixture(scope="module")
def trained(browser, tmp_path_factory):
    """`gradq up` with the README's two jobs trained: (jobs by name, MLflow's URL)."""
    tmp_path = tmp_path_factory.mktemp("up")
    api_port, mlflow_port = free_port(), free_port()
    up = start_gradq_up(tmp_path, api_port, mlflow_port, "up.log")
    try:
        api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30)
        ids = [
            api.post("/v1/jobs", json=readme_job(rate)).raise_for_status().json()["id"]
            for rate in LEARNING_RATES
        ]
        jobs = [wait_for_status(api, job_id, ("succeeded", "failed")) for job_id in ids]
        for job in jobs:
            assert job["status"] == "succeeded", job["error"]
        yield {job["name"]: job for job in jobs}, f"http://127.0.0.1:{mlflow_port}"
        ctrl_c(up)
    finally:
        stop_gradq_up(up)


@pytest.fixture
def page(browser):
    """A new browser profile (nothing remembered: what a first visit meets) at 1280x800."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(SECONDS)
    expect.set_options(timeout=SECONDS)
    yield context.new_page()
    context.close()


def screenshot(page, name: str) -> None:
    """Save the page as ``name``.png in GRADQ_SCREENSHOTS_DIR, if it is set."""
    folder = os.environ.get("GRADQ_SCREENSHOTS_DIR")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(Path(folder) / f"{name}.png"))


def close_assistant(page) -> None:
    """The MLflow Assistant panel takes a third of the page; closed for the screenshots."""
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count() and close.first.is_visible():
        close.first.click()


def expect_machine_learning_mode(page) -> None:
    """The sidebar of the machine-learning mode: GenAI's has no model registry."""
    expect(page.get_by_role("link", name="Model registry")).to_be_visible()


def test_the_experiment_link_lists_both_runs_and_the_readme_gives_it(trained, page):
    jobs, mlflow_url = trained
    link = jobs["lr-0.005"]["mlflow_experiment_url"]

    page.goto(link)

    expect(page.get_by_role("heading", name="Runs", exact=True)).to_be_visible()  # not traces
    expect_machine_learning_mode(page)
    for name in jobs:
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(page.get_by_text("2 matching runs")).to_be_visible()
    close_assistant(page)
    screenshot(page, "runs-list")

    readme = README_EXPERIMENT_LINK.search((REPO / "README.md").read_text())
    assert readme, "the README lost its link to the experiment's runs"
    assert link == mlflow_url + readme.group(1)  # the experiment a fresh `make up` makes first
    # The kind MLflow 3 UIs before the workflowType switch open the experiment in.
    experiment_id = link.split("/experiments/")[1].split("/")[0]
    tags = MlflowClient(mlflow_url).get_experiment(experiment_id).tags
    assert tags.get("mlflow.experimentKind") == "custom_model_development"


def test_the_chart_view_draws_both_cost_curves(trained, page):
    jobs, _ = trained
    page.goto(jobs["lr-0.005"]["mlflow_experiment_url"])
    expect_machine_learning_mode(page)

    chart_view = page.locator("label", has=page.locator("input[value='CHART']"))
    chart_view.click()

    for name in jobs:
        expect(page.get_by_text(f"{name} (cost)", exact=True)).to_be_visible()
    cost_chart = page.get_by_test_id("experiment-view-compare-runs-card").filter(
        has=page.get_by_text("lr-0.02 (cost)", exact=True)
    )
    lines = cost_chart.locator("g.trace.scatter path.js-line")
    expect(lines.first).to_be_attached()
    # Drawn curves, one per run at least and different (not a legend over an empty chart).
    drawn = set(lines.evaluate_all("paths => paths.map(path => path.getAttribute('d'))"))
    assert len(drawn - {None, ""}) >= len(jobs)
    close_assistant(page)
    screenshot(page, "cost-curves")


def test_a_runs_page_shows_its_metrics(trained, page):
    job = trained[0]["lr-0.005"]
    page.goto(job["mlflow_url"])

    expect(page.get_by_role("heading", name="lr-0.005")).to_be_visible()
    # The breadcrumb back to the experiment: "Evaluations" in the GenAI mode.
    expect(page.get_by_test_id("experiment-observatory-link-runs")).to_have_text("Runs")
    expect_machine_learning_mode(page)
    metrics = page.get_by_text(re.compile(r"^Metrics \(\d+\)$"))
    expect(metrics).to_be_visible()
    final_cost = page.get_by_role("row").filter(has=page.get_by_text("final.cost", exact=True))
    expect(final_cost).to_contain_text(str(job["metrics"]["cost"]))
    close_assistant(page)
    metrics.scroll_into_view_if_needed()
    screenshot(page, "run-overview")


def test_a_runs_network_md_and_cost_curve_png_render(trained, page):
    jobs, mlflow_url = trained
    job = jobs["lr-0.005"]
    page.goto(job["mlflow_url"])
    expect_machine_learning_mode(page)
    page.get_by_role("tab", name="Artifacts").click()

    page.get_by_text("network.md", exact=True).click()
    expect(page.get_by_role("heading", name="Forward propagation")).to_be_visible()
    expect(page.get_by_text("No hidden layer: this is logistic")).to_be_visible()

    page.get_by_text("cost_curve.png", exact=True).click()
    image = page.locator("img[src^='blob:']").first
    expect(image).to_be_visible()
    page.wait_for_function(
        "image => image.complete && image.naturalWidth > 0", arg=image.element_handle()
    )
    width = image.evaluate("image => image.naturalWidth")
    assert width == png_width(MlflowClient(mlflow_url), job["mlflow_run_id"], "cost_curve.png")
    close_assistant(page)
    screenshot(page, "cost-curve-artifact")


def png_width(client: MlflowClient, run_id: str, path: str) -> int:
    """The width in a PNG artifact's header (IHDR, bytes 16-20)."""
    with tempfile.TemporaryDirectory() as folder:
        data = Path(client.download_artifacts(run_id, path, folder)).read_bytes()
    return struct.unpack(">I", data[16:20])[0]


def test_the_models_tab_lists_each_runs_logged_model(trained, page):
    jobs, _ = trained
    page.goto(jobs["lr-0.005"]["mlflow_experiment_url"].replace("/runs?", "/models?"))
    expect_machine_learning_mode(page)

    # A row per job's LoggedModel, READY, each linking the run that trained it.
    for name in jobs:
        expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="model", exact=True)).to_have_count(len(jobs))
    expect(page.get_by_text("Ready", exact=True)).to_have_count(len(jobs))
    close_assistant(page)
    screenshot(page, "models-tab")
