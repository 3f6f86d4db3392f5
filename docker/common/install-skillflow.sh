#!/bin/sh
# Install skillflow into its own virtual environment inside a cluster image and put its CLI on PATH.
#
#   install-skillflow.sh PYTHON WHEEL_DIR REQUIREMENTS
#
# PYTHON is a uv interpreter request (e.g. 3.11); uv provides a standalone CPython when the image
# has none, so the image's own Python (3.10 in the NeMo-Skills images, torch's pins in the OpenRLHF
# image) is never touched. skillflow needs Python >= 3.11 and sympy 1.14, which neither allows.
set -eu
python_request="$1"
wheel_dir="$2"
requirements="$3"
prefix="${SKILLFLOW_PREFIX:-/opt/skillflow}"
# Outside /root: under pyxis/enroot the job runs as the submitting user, who must be able to
# read the interpreter the venv points at.
export UV_PYTHON_INSTALL_DIR="${UV_PYTHON_INSTALL_DIR:-/opt/python}"

uv venv --managed-python --python "$python_request" "$prefix"
uv pip install --python "$prefix/bin/python" --no-cache --requirement "$requirements"
uv pip install --python "$prefix/bin/python" --no-cache --no-deps "$wheel_dir"/skillflow-*.whl
uv pip check --python "$prefix/bin/python"
ln -sf "$prefix/bin/skillflow" /usr/local/bin/skillflow
# Fail the build, not the first Slurm job, if the CLI cannot start.
skillflow --help >/dev/null
