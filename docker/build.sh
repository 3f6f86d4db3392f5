#!/usr/bin/env bash
# Build skillflow's container images with docker buildx.
#
#   docker/build.sh [IMAGE|all] [REGISTRY_PREFIX]
#
# IMAGE is one of the names printed by `docker/build.sh --list` (default: all); REGISTRY_PREFIX
# defaults to $SKILLFLOW_REGISTRY or registry.example.com/skillflow. buildx flags come from
# $BUILDX_FLAGS (default --load; e.g. "--push --platform linux/amd64"). The tags are the ones
# tasks/cluster_profiles/example-pyxis.yaml names.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
skillflow_version="0.1.0"

# name | Dockerfile | tag | extra build args
images=(
  "nemo-skills|nemo-skills/Dockerfile|nemo-skills:0.3.0-skillflow${skillflow_version}|--build-arg NEMO_SKILLS_FLAVOR=trtllm"
  "nemo-skills-vllm|nemo-skills/Dockerfile|nemo-skills-vllm:0.3.0-skillflow${skillflow_version}|--build-arg NEMO_SKILLS_FLAVOR=vllm"
  "nemo-skills-sft|nemo-skills-sft/Dockerfile|nemo-skills-sft:0.3.0-skillflow${skillflow_version}|"
  "openrlhf|openrlhf/Dockerfile|openrlhf:0.5.3-skillflow${skillflow_version}|"
  "sandbox|sandbox/Dockerfile|sandbox:${skillflow_version}|"
  "airflow|airflow/Dockerfile|airflow:3.3.2-skillflow${skillflow_version}|"
)

usage() { sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then usage; exit 0; fi
if [[ "${1:-}" == "--list" ]]; then
  for spec in "${images[@]}"; do echo "${spec%%|*}"; done
  exit 0
fi

want="${1:-all}"
registry="${2:-${SKILLFLOW_REGISTRY:-registry.example.com/skillflow}}"
registry="${registry%/}"

selected=()
for spec in "${images[@]}"; do
  if [[ "$want" == "all" || "$want" == "${spec%%|*}" ]]; then selected+=("$spec"); fi
done
if [[ ${#selected[@]} -eq 0 ]]; then
  echo "build.sh: unknown image '$want'; valid: all $(for s in "${images[@]}"; do printf '%s ' "${s%%|*}"; done)" >&2
  exit 2
fi

if ! command -v docker >/dev/null 2>&1; then
  echo "build.sh: no docker CLI on PATH; install Docker (with buildx) to build images" >&2
  exit 1
fi
if ! docker info >/dev/null 2>&1; then
  echo "build.sh: no Docker engine is reachable (docker info failed${DOCKER_HOST:+ for DOCKER_HOST=$DOCKER_HOST});" \
       "nothing was built. Start the daemon or point DOCKER_HOST at one." >&2
  exit 1
fi
if ! docker buildx version >/dev/null 2>&1; then
  echo "build.sh: docker buildx is missing; install the buildx plugin" >&2
  exit 1
fi

# shellcheck disable=SC2206  # BUILDX_FLAGS is a list of words on purpose
extra_flags=(${BUILDX_FLAGS:---load})
for spec in "${selected[@]}"; do
  IFS='|' read -r name dockerfile tag args <<<"$spec"
  # shellcheck disable=SC2206
  build_args=($args)
  echo "==> $name: $registry/$tag"
  docker buildx build "${extra_flags[@]}" "${build_args[@]}" \
    -f "$here/$dockerfile" -t "$registry/$tag" "$root"
done
echo "build.sh: built ${#selected[@]} image(s) under $registry"
