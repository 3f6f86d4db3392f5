#!/bin/sh
# The install steps of docker/local/Dockerfile, written once.
#
#   install-venv.sh VENV PINS            a venv from /tmp/build/PINS.txt and the wheels in
#                                        /tmp/build/deps/PINS/ (no index), checked whole
#   install-venv.sh --skillflow VENV...  skillflow's wheel from /tmp/build/skillflow/ into each venv
#                                        (no dependencies: the pins brought them), the CLI on PATH
set -eu
if [ "$1" = "--skillflow" ]; then
  shift
  for venv in "$@"; do
    "$venv/bin/pip" install --no-cache-dir --no-index --no-deps /tmp/build/skillflow/skillflow-*.whl
  done
  ln -sf /opt/skillflow/bin/skillflow /usr/local/bin/skillflow
  rm -rf /tmp/build
  # Fail the build, not the first Slurm job, if the CLI cannot start.
  skillflow --help >/dev/null
  exit 0
fi
venv="$1"
pins="$2"
python3 -m venv "$venv"
"$venv/bin/pip" install --no-cache-dir --no-index --find-links "/tmp/build/deps/$pins" \
  --requirement "/tmp/build/$pins.txt"
"$venv/bin/pip" check
rm -rf /tmp/build
