"""Each DAG's form is declared once (tasks/forms.py): the DAG's Params are generated from it, the
plan requests take their defaults from it, and a run whose conf misspells a param is refused,
naming the key and listing the valid ones, by the first step the run executes."""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks import forms
from tasks.forms import FORMS, PlanError

ROOT = Path(__file__).resolve().parents[2]
DAG_IDS = sorted(p.stem for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
MISSPELT = "experimnet"


def load_dag(dag_id: str):
    from airflow.sdk import DAG

    spec = importlib.util.spec_from_file_location(f"forms_test_{dag_id}", ROOT / "dags" / f"{dag_id}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return next(v for v in vars(module).values() if isinstance(v, DAG) and v.dag_id == dag_id)


def test_every_dag_file_has_a_declared_form():
    assert sorted(FORMS) == DAG_IDS


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_the_dags_params_are_the_forms(dag_id):
    """Order, defaults, type, section, description and constraints: what the UI shows."""
    dag = load_dag(dag_id)
    form = FORMS[dag_id]
    assert list(dag.params.keys()) == list(form.names)
    assert dag.params.dump() == form.defaults()
    for field in form.fields:
        param = dag.params.get_param(field.name)
        kwargs = field.param_kwargs()
        assert param.description == kwargs.pop("description", None), field.name
        assert param.schema == kwargs, field.name


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_every_form_has_profile_and_experiment_from_one_place(dag_id):
    form = FORMS[dag_id]
    profile = form.field("profile")
    assert (profile.default, profile.type, profile.description) == ("", ("null", "string"), forms.PROFILE_DESCRIPTION)
    assert form.field("experiment").schema == {"minLength": 1, "maxLength": 250}
    if "time_limit" in form.names:
        assert form.field("time_limit").schema == {"pattern": forms.FORM_TIME_PATTERN}


# The first step each DAG runs with the form: its Python callable, or the Slurm job it starts with.
RUN = SimpleNamespace(dag_id="forms-test", run_id="manual__forms-test")


def first_step(dag_id: str, params: dict):
    dag = load_dag(dag_id)
    first = {"openmath_eval": "plan", "openmath_datagen": "plan", "openmath_sft": "plan", "apps_sft": "plan",
             "cluster_check": "plan", "openmath_nightly": "find_models", "skillflow_demo": "slurm_job"}[dag_id]
    task = dag.get_task(first)
    if dag_id == "skillflow_demo":
        return task.execute({"dag": dag, "params": params, "ti": None})
    kwargs = {"params": params, "dag_run": RUN, "dag": dag, "triggering_asset_events": None, "inlet_events": None}
    import inspect

    accepted = inspect.signature(task.python_callable).parameters
    return task.python_callable(**{k: v for k, v in kwargs.items() if k in accepted})


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_a_misspelt_param_is_refused_naming_it_and_the_valid_ones(dag_id):
    from airflow.sdk.exceptions import AirflowFailException

    form = FORMS[dag_id]
    with pytest.raises(AirflowFailException) as err:
        first_step(dag_id, {**form.defaults(), MISSPELT: "x"})
    text = str(err.value)
    assert f"'{MISSPELT}'" in text and dag_id in text
    assert "valid: " + ", ".join(form.names) in text


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_the_form_check_passes_the_declared_params(dag_id):
    form = FORMS[dag_id]
    form.check(form.defaults())
    with pytest.raises(PlanError, match=MISSPELT):
        form.check({**form.defaults(), MISSPELT: 1})


def _requests():
    from tasks.apps.plan import AppsSftRequest
    from tasks.openmath.datagen import DatagenRequest
    from tasks.openmath.evaluation import EvalRequest
    from tasks.openmath.sft import SftRequest

    return {"openmath_eval": EvalRequest, "openmath_datagen": DatagenRequest, "openmath_sft": SftRequest,
            "apps_sft": AppsSftRequest}


@pytest.mark.parametrize("dag_id", ["openmath_eval", "openmath_datagen", "openmath_sft", "apps_sft"])
def test_requests_take_the_forms_defaults_and_refuse_unknown_keys(dag_id):
    cls = _requests()[dag_id]
    form = FORMS[dag_id]
    names = [f.name for f in dataclasses.fields(cls)]
    assert set(names) <= set(form.names), sorted(set(names) - set(form.names))
    built = cls.from_params(form.defaults())
    assert {n: getattr(built, n) for n in names} == {n: form.default(n) for n in names}
    assert dataclasses.asdict(cls()) == dataclasses.asdict(built)
    with pytest.raises(PlanError) as err:
        cls.from_params({MISSPELT: "x"})
    assert f"'{MISSPELT}'" in str(err.value) and "valid: " + ", ".join(form.names) in str(err.value)


def test_request_defaults_are_fresh_copies():
    from tasks.openmath.evaluation import EvalRequest

    first = EvalRequest()
    first.benchmarks.append("gsm8k:1")
    assert EvalRequest().benchmarks == forms.DEFAULT_BENCHMARKS
    assert "gsm8k:1" not in FORMS["openmath_eval"].field("benchmarks").default


def test_the_lists_the_forms_offer_are_the_planners():
    from tasks.openmath.datagen import CONFIGURATIONS
    from tasks.openmath.sft import LOCAL_MODEL
    from tasks.openmath.steps import SEED_BENCHMARKS, SFT_TABLE

    assert list(CONFIGURATIONS) == forms.DATAGEN_CONFIGURATIONS
    assert forms.SFT_BASE_MODELS == [*SFT_TABLE, LOCAL_MODEL, "custom"]
    assert SEED_BENCHMARKS == forms.BENCHMARKS
    assert [b.split(":")[0] for b in forms.DEFAULT_BENCHMARKS] == list(forms.BENCHMARKS)


def test_a_form_declaring_a_param_twice_is_refused():
    with pytest.raises(ValueError, match="declares x twice"):
        forms.Form("d", (forms.Field("x", 1, "integer"), forms.Field("x", 2, "integer")))
