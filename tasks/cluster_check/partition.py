"""The partition's real limits, read from Slurm on the login node and held against the profile.

One remote command prints ``scontrol show partition P -o``, every node (``scontrol show node -o``,
filtered here to the partition's) and the partition names (``sinfo``), separated by marker lines;
:func:`partition_rows` turns that text into table rows. The profile's ``slurm.max_time`` and
``slurm.gpus_per_node`` are what the plan-time checks enforce, so a profile that promises more
than the partition gives would let through jobs Slurm then refuses or never starts.
"""
from __future__ import annotations

import re
import shlex

from tasks.cluster_check.table import FAIL, PASS, SKIP, Row, passed
from tasks.profiles import ClusterProfile
from tasks.slurm.durations import format_seconds, slurm_time_seconds
from tasks.slurm.limits import gpus_in_gres

MARK = "@@SKILLFLOW_CLUSTER_CHECK"
_FIELD = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_:/]*)=(\S*)")


def limits_command(partition: str) -> str:
    q = shlex.quote(partition)
    return (f"scontrol show partition {q} -o 2>&1; echo {MARK} nodes; scontrol show node -o 2>&1; "
            f"echo {MARK} partitions; sinfo -h -o %R 2>&1; true")


def fields_of(line: str) -> dict[str, str]:
    """``Key=Value`` pairs of one ``scontrol -o`` line (values with spaces, like ``OS=``, are cut)."""
    return {m.group(1): m.group(2) for m in _FIELD.finditer(line)}


def parse_limits(text: str) -> tuple[dict[str, str] | None, list[dict[str, str]], list[str], str]:
    """(partition fields or None, its nodes' fields, all partition names, scontrol's own message)."""
    sections = {"partition": [], "nodes": [], "partitions": []}
    current = "partition"
    for line in text.splitlines():
        if line.startswith(MARK):
            current = line.split()[-1]
            continue
        if line.strip():
            sections[current].append(line.strip())
    part_lines = [ln for ln in sections["partition"] if ln.startswith("PartitionName=")]
    partition = fields_of(part_lines[0]) if part_lines else None
    name = partition.get("PartitionName") if partition else None
    nodes = [fields_of(ln) for ln in sections["nodes"] if ln.startswith("NodeName=")]
    nodes = [n for n in nodes if name in n.get("Partitions", "").split(",")]
    return partition, nodes, sorted(set(sections["partitions"])), " ".join(sections["partition"])[:300]


def partition_rows(profile: ClusterProfile, text: str) -> list[Row]:
    """The profile's Slurm facts against the output of :func:`limits_command`."""
    target = f"partition {profile.partition}"
    partition, nodes, names, message = parse_limits(text)
    if partition is None:
        return [Row("partition exists", target, FAIL, f"scontrol: {message or 'no such partition'}",
                    f"set slurm.partition to one of: {', '.join(names) or '(sinfo listed none)'}")]
    rows = [Row("partition exists", target, PASS,
                f"Nodes={partition.get('Nodes')} MaxTime={partition.get('MaxTime')} "
                f"MaxNodes={partition.get('MaxNodes')} DefaultTime={partition.get('DefaultTime')}")]
    state = partition.get("State", "?")
    rows.append(Row("partition is up", target, *passed(PASS if state == "UP" else FAIL, f"State={state}",
                                                       "ask the cluster's admins, or pick another slurm.partition")))
    rows.append(_max_time_row(profile, target, partition.get("MaxTime", "UNLIMITED")))
    rows.append(_default_time_row(profile, target))
    rows.append(_gpus_row(profile, target, nodes))
    if profile.cpus_per_node:
        rows.append(_cpus_row(profile, target, nodes))
    if profile.multi_node_partition:
        rows.append(_multi_node_row(profile, names))
    return rows


def _multi_node_row(profile: ClusterProfile, names: list[str]) -> Row:
    """Jobs over more than one node are sent to ``slurm.multi_node_partition``; sbatch refuses an unknown one."""
    wanted = profile.multi_node_partition
    ok = wanted in names
    return Row("multi-node partition exists", f"partition {wanted}", *passed(
        PASS if ok else FAIL, f"sinfo lists: {', '.join(names) or '(none)'}",
        f"set slurm.multi_node_partition to one of: {', '.join(names)} (or null)"))


def _max_time_row(profile: ClusterProfile, target: str, real: str) -> Row:
    real_s = slurm_time_seconds(real)
    if not profile.max_time:
        return Row("max_time within the partition's", target, FAIL, f"slurm.max_time is not set; MaxTime={real}",
                   f"set slurm.max_time to {format_seconds(real_s) if real_s else 'the walltime jobs may use'}")
    mine = slurm_time_seconds(profile.max_time)
    ok = real_s is None or (mine is not None and mine <= real_s)
    detail = f"slurm.max_time={profile.max_time}, partition MaxTime={real}"
    return Row("max_time within the partition's", target, *passed(PASS if ok else FAIL, detail,
               f"set slurm.max_time to {format_seconds(real_s)} or less: the plan-time check trusts it"))


def _default_time_row(profile: ClusterProfile, target: str) -> Row:
    if not profile.default_time or not profile.max_time:
        return Row("default_time within max_time", target, SKIP, "slurm.default_time or slurm.max_time is not set")
    ok = (slurm_time_seconds(profile.max_time) is None
          or (slurm_time_seconds(profile.default_time) or 0) <= slurm_time_seconds(profile.max_time))
    return Row("default_time within max_time", target, *passed(
        PASS if ok else FAIL, f"slurm.default_time={profile.default_time}, slurm.max_time={profile.max_time}",
        "set slurm.default_time to at most slurm.max_time"))


def _gpus_row(profile: ClusterProfile, target: str, nodes: list[dict[str, str]]) -> Row:
    if not nodes:
        return Row("GPUs per node", target, FAIL, "scontrol lists no node of the partition",
                   "check the partition's Nodes= with the cluster's admins")
    per_node = {n.get("NodeName", "?"): gpus_in_gres(n.get("Gres", "")) for n in nodes}
    fewest = min(per_node.values())
    shown = ", ".join(f"{name}: {count}" for name, count in list(per_node.items())[:8])
    more = f" and {len(per_node) - 8} more nodes" if len(per_node) > 8 else ""
    detail = f"slurm.gpus_per_node={profile.gpus_per_node}; GPUs in Gres= per node: {shown}{more}"
    return Row("GPUs per node", target, *passed(PASS if profile.gpus_per_node <= fewest else FAIL, detail,
               f"set slurm.gpus_per_node to {fewest}, what every node of the partition has"))


def _cpus_row(profile: ClusterProfile, target: str, nodes: list[dict[str, str]]) -> Row:
    counts = [int(n["CPUTot"]) for n in nodes if n.get("CPUTot", "").isdigit()]
    fewest = min(counts) if counts else 0
    return Row("CPUs per node", target, *passed(
        PASS if counts and int(profile.cpus_per_node) <= fewest else FAIL,
        f"slurm.cpus_per_node={profile.cpus_per_node}; fewest CPUTot on the partition's nodes: {fewest}",
        f"set slurm.cpus_per_node to {fewest}"))
