"""A tiny real image for tests of the container runtime's plumbing, made from this host's files.

The runtime's own behaviour (the job's environment, mounts, working folder and exit status
reaching the container; a cancelled job's container ended) does not depend on what an image
holds, and the project's images take minutes to build. This one is bash, a few coreutils and
the libraries they load, imported into podman in about a second. It holds no Python, so a step
that ran on the host by mistake could not pass for one that ran inside it.
"""
from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
from pathlib import Path

#: The commands the probe image has, beside bash.
TOOLS = ("sleep", "cat", "env", "hostname", "ls", "id")

#: A file only the image has: a step that sees it ran inside the image.
MARKER = "/skillflow-probe-image"


def _with_libraries(binary: str) -> list[str]:
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libs = [part for line in out.splitlines() for part in line.split() if part.startswith("/")]
    return [binary, *libs]


def build(podman: str = "podman") -> str:
    """The probe image's name, imported if podman lacks it (named by the hash of its files)."""
    files = sorted({f for tool in ("bash", *TOOLS) for f in _with_libraries(shutil.which(tool))})
    digest = hashlib.sha256("\n".join(files).encode())
    for f in files:
        digest.update(Path(f).read_bytes())
    name = f"localhost/skillflow-probe:{digest.hexdigest()[:12]}"
    if subprocess.run([podman, "image", "exists", name]).returncode == 0:
        return name
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("tmp", "proc", "sys", "dev", "etc", "bin", "usr/bin"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        for f in files:
            tar.add(str(Path(f).resolve()), arcname=f.lstrip("/"))
        marker = MARKER.lstrip("/").encode()
        info = tarfile.TarInfo(MARKER.lstrip("/"))
        info.size = len(marker)
        tar.addfile(info, io.BytesIO(marker))
    subprocess.run([podman, "import", "--change", "ENV PATH=/usr/bin:/bin", "-", name], input=buf.getvalue(),
                   check=True, capture_output=True)
    return name
