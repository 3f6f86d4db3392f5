"""The minimal root a sandboxed program sees: the interpreter and its libraries, nothing of the host.

Read-only mounts do not hide files (a program could read the ``--problems`` file of ``apps eval``,
the shared data, the stack's SQLite files) and do not stop ``connect()`` on a Unix socket (munge,
slurmstepd). So each worker, as PID 1 of fresh namespaces and root in them, builds a new root on
a small tmpfs, makes it ``/`` with pivot_root(2) and detaches the host's tree: no path a program
can name resolves to anything of the host but what is listed here.

* the system's programs and libraries: ``/usr`` and the ``/bin``, ``/lib``... entries (symlinks
  where the host has symlinks), read-only and nosuid;
* the running Python: its prefixes (base install, virtual environment) and any ``sys.path``
  folder outside them, read-only, at their host paths, because ``sys.path`` holds absolute paths.
  The project checkout is left out even when it is on ``sys.path`` (``PYTHONPATH``, an editable
  install), except a virtual environment inside it;
* ``/etc/ld.so.cache`` (the dynamic linker finds multiarch libraries through it) and
  ``/etc/localtime``, nothing else of ``/etc``;
* ``/dev`` with null, zero, full, random and urandom bound from the host, and the fd links;
* ``/proc`` of the worker's PID namespace with ``hidepid=2``: a program sees its own processes;
* an empty ``/tmp`` nobody may write, and :data:`SCRATCH`, where each execution gets a fresh
  tmpfs (size and inode limits) that is unmounted afterwards, so nothing carries over.

``/`` itself is then remounted read-only. Everything here is stdlib and runs in the worker.
"""
from __future__ import annotations

import ctypes
import os
import platform
import site
import sys
import sysconfig

#: The program's working folder, HOME and TMPDIR (a fresh tmpfs per execution).
SCRATCH = "/home/sandbox"
SYSTEM_ENTRIES = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime")
DEVICES = ("null", "zero", "full", "random", "urandom")
DEV_LINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
             "stderr": "/proc/self/fd/2"}

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
#: pivot_root(2) has no glibc wrapper; its syscall number per architecture (asm/unistd.h).
_PIVOT_ROOT_NR = {"x86_64": 155, "aarch64": 41, "arm64": 41}

_libc = ctypes.CDLL(None, use_errno=True)


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    if _libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype or 'bind'} {source or ''} on {target}: {os.strerror(err)}")


def unmount(target: str) -> None:
    """Detach ``target`` (lazily: the mount goes away once nothing uses it)."""
    if _libc.umount2(target.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}")


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def python_dirs(project_root: str) -> list[str]:
    """Folders of the running interpreter a program needs, outermost only, at their host paths.

    The prefixes and the installation's own library folders (``sysconfig``, ``site``); never
    other ``sys.path`` entries (``PYTHONPATH``, the worker's current folder ``/``, an editable
    install's checkout), and never the project checkout unless inside a prefix (a venv in it).
    """
    prefixes = {p for p in (sys.base_prefix, sys.base_exec_prefix, sys.prefix, sys.exec_prefix) if p}
    prefixes |= {os.path.realpath(p) for p in prefixes}
    wanted = set(prefixes) | {p for p in sysconfig.get_paths().values() if "include" not in p}
    wanted |= set(site.getsitepackages()) if hasattr(site, "getsitepackages") else set()
    wanted = {p for p in wanted if os.path.isabs(p) and os.path.isdir(p) and p != "/"
              and not any(_inside(p, s) for s in SYSTEM_ENTRIES)
              and (not _inside(p, project_root) or any(_inside(p, q) for q in prefixes))}
    chosen: list[str] = []
    for path in sorted(wanted, key=len):
        if not any(_inside(path, c) for c in chosen):
            chosen.append(path)
    return chosen


def _bind_readonly(source: str, target: str) -> None:
    if os.path.isdir(source):
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        open(target, "w").close()
    mount(source, target, None, MS_BIND | MS_REC)
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _copy_entry(path: str, root: str) -> str | None:
    """Replicate ``path`` under ``root``: a symlink as a symlink, else a read-only bind."""
    if os.path.islink(path):
        os.symlink(os.readlink(path), root + path)
        return None
    if os.path.exists(path):
        _bind_readonly(path, root + path)
        return path
    return None


def build(root: str, project_root: str) -> dict:
    """Make ``root`` (an empty folder) this mount namespace's ``/``; see the module docstring.

    Must run in a private mount namespace as root. Returns what is exposed, for ``/health``.
    """
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=4m,nr_inodes=4096,mode=0755")
    exposed = [p for p in (_copy_entry(e, root) for e in SYSTEM_ENTRIES) if p]
    for path in python_dirs(project_root):
        _bind_readonly(path, root + path)
        exposed.append(path)
    os.makedirs(root + "/etc", mode=0o755, exist_ok=True)
    exposed += [p for p in (_copy_entry(f, root) for f in ETC_FILES) if p]
    os.mkdir(root + "/dev", 0o755)
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            open(f"{root}/dev/{name}", "w").close()
            mount(f"/dev/{name}", f"{root}/dev/{name}", None, MS_BIND)
    for name, target in DEV_LINKS.items():
        os.symlink(target, f"{root}/dev/{name}")
    os.mkdir(root + "/proc", 0o555)
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "hidepid=2")
    # exist_ok: an interpreter under /tmp (a venv in a checkout there) has already made it.
    os.makedirs(root + "/tmp", 0o755, exist_ok=True)
    os.makedirs(root + SCRATCH, mode=0o755)
    _pivot(root)
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    return {"minimal_root": True, "exposed": exposed}


def _pivot(root: str) -> None:
    number = _PIVOT_ROOT_NR.get(platform.machine())
    if number is None:
        raise OSError(f"pivot_root: syscall number unknown for {platform.machine()}")
    os.chdir(root)
    # pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves the new.
    if _libc.syscall(number, b".", b".") != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"pivot_root {root}: {os.strerror(err)}")
    unmount(".")
    os.chdir("/")


def mount_scratch(uid: int, size_mb: int, max_files: int) -> str:
    """A fresh tmpfs on :data:`SCRATCH` owned by ``uid``: at most ``size_mb`` and ``max_files`` inodes."""
    mount("tmpfs", SCRATCH, "tmpfs", MS_NOSUID | MS_NODEV,
          f"size={int(size_mb)}m,nr_inodes={int(max_files)},mode=0700,uid={uid},gid={uid}")
    return SCRATCH
