"""The local cluster's two nodes: the slurm.conf the stack writes and the local profile describe
the same cluster (the profile is the only place jobs learn partitions and interfaces from)."""
from __future__ import annotations

from pathlib import Path

from devtools.stack import nodes
from devtools.stack.config import render_gres_conf, render_slurm_conf
from devtools.stack.layout import Layout, Ports


def _partitions(tmp_path: Path) -> dict[str, str]:
    conf = render_slurm_conf(Layout(root=Path.cwd(), var=tmp_path, ports=Ports()))
    found = {}
    for line in conf.splitlines():
        if line.startswith("PartitionName="):
            fields = dict(f.split("=", 1) for f in line.split())
            found[fields["PartitionName"]] = fields["Nodes"]
    return found


def test_only_the_profiles_multi_node_partition_reaches_the_second_node(tmp_path, local):
    profile = local
    parts = _partitions(tmp_path)
    assert parts[profile.multi_node_partition].split(",") == list(nodes.NODES)
    # Every other partition stays on the host, whose loopback has the stack's services.
    assert {name for name, members in parts.items() if nodes.SECOND_NODE in members.split(",")} == \
        {profile.multi_node_partition}
    assert parts[profile.partition] == nodes.FIRST_NODE


def test_gloo_uses_the_veth_the_stack_names_on_both_nodes(local):
    assert local.env["GLOO_SOCKET_IFNAME"] == nodes.LINK


def test_each_node_has_its_address_its_gpus_and_files_of_its_own(tmp_path):
    layout = Layout(root=Path.cwd(), var=tmp_path, ports=Ports())
    conf = render_slurm_conf(layout)
    for node in nodes.NODES:
        line = next(l for l in conf.splitlines() if l.startswith(f"NodeName={node} "))
        assert f"NodeAddr={nodes.NODE_ADDRS[node]}" in line and "Gres=gpu:" in line
        assert f"NodeName={node} Name=gpu" in render_gres_conf(layout)
    assert f"SlurmdPidFile={layout.run}/slurmd-%n.pid" in conf and "SlurmdSpoolDir=" in conf and "spool-%n" in conf
    assert len(set(nodes.NODE_ADDRS.values())) == len(nodes.NODES)


def test_the_second_node_runs_in_its_namespaces_and_the_first_on_the_host():
    assert nodes.in_node(["slurmd", "-N", nodes.FIRST_NODE], nodes.FIRST_NODE) == ["slurmd", "-N", nodes.FIRST_NODE]
    argv = nodes.in_node(["slurmd", "-N", nodes.SECOND_NODE], nodes.SECOND_NODE)
    assert argv[:3] == ["nsenter", f"--net=/run/netns/{nodes.NETNS}", "unshare"]
    assert argv[-1] == f"hostname {nodes.SECOND_NODE} && exec slurmd -N {nodes.SECOND_NODE}"
