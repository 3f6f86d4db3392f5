"""The Airflow and MLflow UIs in a real browser (headless Chromium), as a user meets them.

One pass through what the mission's users do: log in, open `openmath_eval`'s trigger form, check its
sections and defaults, see a bad value refused naming the param, trigger a tiny run, follow the
task's Slurm log link and MLflow link, and on MLflow open the run's metrics, its summary artifact,
the comparison of two runs, the run's accuracy plot with interval bars, and the run that
`skillflow compare` logs for the two (its A-beside-B plot rendered as an image). Screenshots of every step: ``var/test-artifacts/browser/``.
"""
from __future__ import annotations

import json
import time
import urllib.parse

import pytest

from devtools.stack.config import load_secrets
from tests.integration.airflow_api import client_for
from tests.integration.browser import CHROMIUM, Steps, chromium_context

pytestmark = pytest.mark.integration

# One problem of GSM8K, greedy only: the run is about the UI, not the model.
TINY = {"data": "samples", "limit": 1, "benchmarks": ["gsm8k:0"], "batch_size": 4,
        "experiment": "selftest-browser"}
SECTIONS = ["Model", "Benchmarks", "Generation", "Cluster", "Tracking"]
TIMEOUT_MS = 30_000


@pytest.fixture()
def steps(stack):
    return Steps(stack.layout.var / "test-artifacts" / "browser")


def _field(page, name: str):
    # Every widget of Airflow's form carries name="element_<param>" (number inputs have no such id).
    return page.locator(f"[name=element_{name}]")


def _open_section(dialog, section: str, field: str) -> None:
    """Sections of the form are accordion items, one open at a time: open the one holding ``field``."""
    if not _field(dialog, field).is_visible():
        dialog.get_by_role("button", name=section, exact=True).click()
    _field(dialog, field).wait_for(state="visible")


def _submit(page, dialog):
    """Press the dialog's Trigger button; returns the REST response of the POST it makes."""
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/dagRuns")) as resp:
        dialog.get_by_role("button", name="Trigger").last.click()
    return resp.value


def _follow(context, page, link):
    """Click a link as a user would: Airflow opens same-origin extra links in the same tab
    (the plugin's endpoints) and others in a new one."""
    if link.get_attribute("target") == "_blank":
        with context.expect_page() as new:
            link.click()
        target = new.value
    else:
        link.click()
        target = page
    target.wait_for_load_state()
    return target


def _show_png(page, folder: str, name: str) -> None:
    """Open ``folder/name`` in MLflow's artifact tree and wait until the browser has decoded it as
    an image of plot size (the UI's logo and icons are far smaller)."""
    page.get_by_text(folder, exact=True).first.click()
    page.get_by_text(name, exact=True).first.click()
    page.wait_for_function("() => [...document.images].some(i => i.complete && i.naturalWidth >= 400)",
                           timeout=TIMEOUT_MS)


def test_trigger_form_run_links_and_mlflow_pages(stack, steps):
    assert CHROMIUM.exists(), "Debian's chromium is missing: run `make install`"
    started = time.monotonic()
    api = client_for(stack)
    api.wait_for_dag("openmath_eval")
    base = f"http://127.0.0.1:{stack.layout.ports.airflow}"
    password = load_secrets(stack.layout)["admin_password"]

    with chromium_context() as context:
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        step = "login"
        try:
            page.goto(base + "/")
            page.get_by_role("textbox", name="username").fill("admin")
            page.get_by_label("password").fill(password)
            steps.shot(page, "login form")
            page.get_by_role("button", name="sign in").click()
            page.wait_for_url(lambda url: "/login" not in url)

            step = "trigger form"
            page.goto(base + "/dags/openmath_eval")
            page.get_by_role("button", name="Trigger").first.click()
            dialog = page.get_by_role("dialog")
            dialog.wait_for()
            for section in SECTIONS:
                assert dialog.get_by_role("button", name=section, exact=True).count() == 1, section
            steps.shot(page, "trigger form sections")
            _open_section(dialog, "Generation", "batch_size")
            # Empty = the seed's rule (16 for 34B+ models, 64 otherwise), decided from the model.
            assert _field(dialog, "batch_size").input_value() == ""
            assert _field(dialog, "max_code_executions").input_value() == "6"
            _field(dialog, "batch_size").fill(str(TINY["batch_size"]))
            _open_section(dialog, "Tracking", "experiment")
            assert _field(dialog, "experiment").input_value() == "openmath-eval"
            _field(dialog, "experiment").fill(TINY["experiment"])
            _open_section(dialog, "Benchmarks", "benchmarks")
            defaults = _field(dialog, "benchmarks").input_value().split("\n")
            assert defaults[0] == "gsm8k:50" and defaults[-1] == "math:50" and len(defaults) == 8, defaults
            assert _field(dialog, "data").input_value() == "download"
            steps.shot(page, "trigger form defaults")

            step = "invalid value"
            _field(dialog, "data").fill(TINY["data"])
            _field(dialog, "limit").fill(str(TINY["limit"]))
            _field(dialog, "benchmarks").fill("gsm8k:fifty")
            refused = _submit(page, dialog)
            assert refused.status == 400, refused.text()
            error = dialog.get_by_text("Invalid input for param benchmarks")
            error.wait_for()
            assert "gsm8k:fifty" in error.inner_text()
            error.scroll_into_view_if_needed()
            steps.shot(page, "invalid value refused naming the param")

            step = "trigger"
            # The error toast sits over the button while the pointer rests on it (hover pauses it).
            page.mouse.move(5, 5)
            page.get_by_text("Failed to Trigger Dag").wait_for(state="hidden")
            _field(dialog, "benchmarks").fill("\n".join(TINY["benchmarks"]))
            accepted = _submit(page, dialog)
            assert accepted.status == 200, accepted.text()
            run_id = accepted.json()["dag_run_id"]
            sent = accepted.json()["conf"]
            assert {k: sent[k] for k in TINY} == TINY, sent
            assert sent["max_code_executions"] == 6 and sent["model"] == "smollm2"
            # A second run of the same form, through the API, for MLflow's comparison view.
            other_id = api.trigger("openmath_eval", dict(TINY))["dag_run_id"]

            step = "wait for the run"
            quoted = urllib.parse.quote(run_id, safe="")
            page.goto(f"{base}/dags/openmath_eval/runs/{quoted}")
            for rid in (run_id, other_id):
                final = api.wait_for_run("openmath_eval", rid, timeout=900)
                assert final["state"] == "success", api.task_instances("openmath_eval", rid)
            page.reload()
            page.get_by_text("success", exact=False).first.wait_for()
            steps.shot(page, "run finished")

            step = "slurm log link"
            # The task instance's Details tab lists its extra links. `summarize` is a Slurm task that
            # is not mapped (greedy is mapped per benchmark, so its page needs a map index).
            details = f"{base}/dags/openmath_eval/runs/{quoted}/tasks/summarize/details"
            page.goto(details)
            log_link = page.get_by_role("link", name="Slurm job log")
            log_link.wait_for()
            steps.shot(page, "task instance links")
            log_page = _follow(context, page, log_link)
            body = log_page.locator("body").inner_text()
            assert "skillflow: job" in body and "main step exited with status 0" in body, body[-2000:]
            steps.shot(log_page, "slurm job log")

            step = "mlflow link"
            if log_page is page:
                page.go_back()
            else:
                page.bring_to_front()
            mlflow_page = _follow(context, page, page.get_by_role("link", name="MLflow run"))
            report = api.xcom("openmath_eval", run_id, "report")
            other = api.xcom("openmath_eval", other_id, "report")
            mlflow_page.wait_for_url(lambda url: report["mlflow_run_id"] in url)
            mlflow_page.get_by_text(report["mlflow_run_id"]).first.wait_for()
            mlflow_page.get_by_text("gsm8k.greedy.correct_answer").first.wait_for()
            # MLflow 3 opens its assistant panel beside every page; close it for the screenshots.
            assistant = mlflow_page.get_by_role("button", name="Close", exact=True)
            if assistant.count():
                assistant.first.click()
            steps.shot(mlflow_page, "mlflow run and metrics")

            step = "summary artifact"
            mlflow_page.get_by_role("tab", name="Artifacts").click()
            mlflow_page.get_by_text("summary", exact=True).first.click()
            mlflow_page.get_by_text("summary.txt", exact=True).first.click()
            mlflow_page.get_by_text("summary/summary.txt").first.wait_for()
            mlflow_page.get_by_text("greedy", exact=False).first.wait_for()
            steps.shot(mlflow_page, "summary artifact")

            step = "compare runs"
            mlflow_base = stack.env["MLFLOW_TRACKING_URI"].rstrip("/")
            ids = json.dumps([report["mlflow_run_id"], other["mlflow_run_id"]])
            experiment = mlflow_page.url.split("/experiments/")[1].split("/")[0]
            mlflow_page.goto(f"{mlflow_base}/#/compare-runs?runs={urllib.parse.quote(ids)}"
                             f"&experiments={urllib.parse.quote(json.dumps([experiment]))}")
            mlflow_page.get_by_text("gsm8k.greedy.correct_answer").first.wait_for()
            text = mlflow_page.locator("body").inner_text()
            assert report["mlflow_run_id"] in text and other["mlflow_run_id"] in text, text[:2000]
            steps.shot(mlflow_page, "compare two runs", full_page=True)

            step = "accuracy plot"
            # Each evaluation run logs plots/accuracy.png (accuracy per benchmark with 95% interval
            # bars); the UI's artifact view must show it as an image, not a download link.
            mlflow_page.goto(f"{mlflow_base}/#/experiments/{experiment}/runs/{report['mlflow_run_id']}/artifacts")
            _show_png(mlflow_page, "plots", "accuracy.png")
            steps.shot(mlflow_page, "accuracy plot with intervals")

            step = "comparison run"
            # `skillflow compare` on the two runs' ids, logged as a run of its own; its A-beside-B plot
            # and table are what a user opens in the MLflow UI.
            from operators.tracking import mlflow_runs
            from tasks.cli import main as skillflow

            compare_exp = f"{TINY['experiment']}-compare"
            assert skillflow(["compare", report["mlflow_run_id"], other["mlflow_run_id"],
                              "--json", str(steps.folder / "compare.json"), "--mlflow-experiment", compare_exp]) == 0
            mlc = mlflow_runs.client("mlflow_local")
            compare_exp_id = mlflow_runs.experiment_id(mlc, compare_exp)
            logged = [r for r in mlc.search_runs([compare_exp_id])
                      if r.data.tags.get("skillflow.compare.run_a") == report["mlflow_run_id"]
                      and r.data.tags.get("skillflow.compare.run_b") == other["mlflow_run_id"]]
            assert len(logged) == 1, [r.data.tags for r in logged]
            mlflow_page.goto(f"{mlflow_base}/#/experiments/{compare_exp_id}/runs/{logged[0].info.run_id}/artifacts")
            _show_png(mlflow_page, "plots", "accuracy_a_vs_b.png")
            steps.shot(mlflow_page, "comparison run plot")
        except Exception:
            steps.keep_failure(page, step)
            for other_page in context.pages:
                if other_page is not page:
                    steps.keep_failure(other_page, f"{step}-tab")
            raise
    print(f"browser test wall time: {time.monotonic() - started:.0f} s")
