"""The local cluster's two compute nodes, on one machine.

A multi-node job (the APPS training across nodes) needs nodes that are apart the way two hosts
are: each with its own addresses, its own host name, and a rendezvous that must cross a network.
The first node is the host itself; the second is a slurmd in a network and UTS namespace of its
own, joined to the host by a veth pair (``../shared/local-stack-notes.md``, "A second Slurm node").
Both share the file system, as cluster nodes share theirs, and the same munged.

The second node sits only in the multi-node partition: its loopback is its own, so the services
the other jobs reach on 127.0.0.1 (S3, MLflow, the model server) are not there, as on a real
compute node they would be behind the login node.
"""
from __future__ import annotations

import shlex
import socket
import subprocess
from pathlib import Path

#: Slurm's names for the nodes; the first is the host (whose own name Slurm is told as its
#: NodeHostname). Not "localhost": Slurm 22.05 then refuses the second node as a duplicate.
FIRST_NODE = "node1"
SECOND_NODE = "node2"
NODES = (FIRST_NODE, SECOND_NODE)
#: The partition whose jobs may span both nodes (the profile's ``slurm.multi_node_partition``).
MULTI_PARTITION = "multi"

NETNS = "skillflow-node2"
#: The veth's name on both sides, so that one GLOO_SOCKET_IFNAME (the profile's env) fits each node.
LINK = "sfnode"
HOST_ADDR = "10.213.0.1"
NODE_ADDR = "10.213.0.2"
PREFIX_LEN = 24
#: Where each node is reached (slurm.conf's NodeAddr); the controller listens on the host's.
NODE_ADDRS = {FIRST_NODE: HOST_ADDR, SECOND_NODE: NODE_ADDR}


def node_hostname(node: str) -> str:
    """What ``hostname`` says on ``node``: the machine's own name on the first, the node's on the second."""
    return socket.gethostname() if node == FIRST_NODE else node


class NodeNetworkError(RuntimeError):
    """The namespace or the veth pair could not be made (names the command and its error)."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if check and out.returncode != 0:
        raise NodeNetworkError(f"`ip {' '.join(args)}` failed (rc {out.returncode}): {out.stderr.strip()} -- the "
                               f"second Slurm node needs iproute2 and the right to make network namespaces (root)")
    return out


def netns_path() -> Path:
    return Path("/run/netns") / NETNS


def _has_addr(addr: str, *, inside: bool) -> bool:
    args = (["-n", NETNS] if inside else []) + ["-o", "addr", "show", "dev", LINK]
    out = _ip(*args, check=False)
    return out.returncode == 0 and f" {addr}/" in out.stdout


def ensure_network() -> None:
    """Make the namespace and the veth pair, once; later calls find them and do nothing."""
    if _has_addr(HOST_ADDR, inside=False) and netns_path().exists() and _has_addr(NODE_ADDR, inside=True):
        return
    if not netns_path().exists():
        _ip("netns", "add", NETNS)
    if _ip("link", "show", LINK, check=False).returncode != 0:
        peer = f"{LINK}-peer"
        _ip("link", "add", LINK, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", NETNS)
        _ip("-n", NETNS, "link", "set", peer, "name", LINK)
    if not _has_addr(HOST_ADDR, inside=False):
        _ip("addr", "add", f"{HOST_ADDR}/{PREFIX_LEN}", "dev", LINK)
    if not _has_addr(NODE_ADDR, inside=True):
        _ip("-n", NETNS, "addr", "add", f"{NODE_ADDR}/{PREFIX_LEN}", "dev", LINK)
    _ip("link", "set", LINK, "up")
    _ip("-n", NETNS, "link", "set", LINK, "up")
    _ip("-n", NETNS, "link", "set", "lo", "up")


def in_node(argv: list[str], node: str) -> list[str]:
    """``argv`` as it runs on ``node``: on the second node, inside its namespaces with its host name.

    ``nsenter --net`` rather than ``ip netns exec``: the latter mounts a fresh /sys, which hides
    the cgroup file system and slurmd exits.
    """
    if node == FIRST_NODE:
        return list(argv)
    return ["nsenter", f"--net={netns_path()}", "unshare", "--uts", "sh", "-c",
            f"hostname {shlex.quote(node)} && exec {shlex.join(argv)}"]
