"""The local profile's container images, built on this machine and kept while their inputs hold.

No registry is reachable here, so nothing is pulled: the base is a Debian root file system made
with debootstrap from the host's own apt mirror, and each image's Python packages come from a
wheelhouse that the host's pip builds (it has PyPI), installed in the image with no index. Every
image is tagged with the hash of everything it is built from, so ``ensure`` builds only what is
missing: podman's store outlives clones and sessions on the same machine, and a second ``make
local-images`` costs a few ``podman image exists`` calls. The base is keyed by its package list
only; ``podman rmi`` it to take Debian's updates.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The base every local image starts from: Debian 12, as the python:3.11-slim-bookworm images the
#: cluster Dockerfiles use, with Debian's Python 3.11 in place of the image's own build of it.
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "procps",
                 # OpenMP's runtime, which llama.cpp's CPU backend loads (the model server image).
                 "libgomp1")
APT_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")


#: One Dockerfile for every local image, a target each, and the script its steps share.
DOCKERFILE = "docker/local/Dockerfile"
INSTALL_SCRIPT = "docker/local/install-venv.sh"
#: The files every build context holds besides the Dockerfile: its install script and the cluster
#: sandbox image's two start scripts, which the local sandbox image starts the same way.
CONTEXT_FILES = (INSTALL_SCRIPT, "docker/sandbox/entrypoint.sh", "docker/sandbox/start.sh")


@dataclass(frozen=True)
class LocalImage:
    """One image: its target in docker/local/Dockerfile and the pin files whose wheels it installs.

    Every target starts from the Dockerfile's ``cli`` stage and ends with skillflow's own wheel, so
    podman's layer cache holds the CLI's venv once and a change of skillflow's code rebuilds only
    each image's last layer."""
    name: str
    requirements: tuple[str, ...] = ()
    #: Constraint files for the wheelhouse (the lock, where a pin file names only the top package).
    constraints: tuple[str, ...] = ()

    @property
    def repository(self) -> str:
        return f"localhost/skillflow-{self.name}"


RUNTIME_PINS = "docker/common/skillflow-runtime.txt"

IMAGES: tuple[LocalImage, ...] = (
    # The skillflow CLI: generation client, grading, data prep, summaries, checkpoint upload.
    LocalImage("runtime", (RUNTIME_PINS,)),
    # The code sandbox: the CLI plus the interpreter model-written code runs on, with the package
    # versions of upstream's sandbox image.
    LocalImage("sandbox", (RUNTIME_PINS, "docker/sandbox/requirements.txt")),
    # The CPU trainer standing in for the NeMo and OpenRLHF images: torch's CPU build, transformers.
    LocalImage("trainer", (RUNTIME_PINS, "requirements-train.txt")),
    # The model server standing in for vLLM and TensorRT-LLM: llama-cpp-python's server, at the lock's versions.
    LocalImage("model-server", (RUNTIME_PINS, "docker/local/model-server.txt"), constraints=("requirements.txt",)),
)


def by_name(name: str) -> LocalImage:
    for image in IMAGES:
        if image.name == name:
            return image
    raise KeyError(f"no local image '{name}' (known: {', '.join(i.name for i in IMAGES)})")


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Run quietly; on failure, raise with the command's own output (a build's last lines say
    which package or step was missing)."""
    if "stdout" not in kw:
        kw.update(stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    done = subprocess.run(cmd, **kw)
    if done.returncode != 0:
        tail = (done.stdout or b"").decode("utf-8", "replace")[-4000:] if isinstance(done.stdout, bytes) else ""
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed (rc {done.returncode})\n{tail}")
    return done


def exists(tag: str) -> bool:
    return subprocess.run(["podman", "image", "exists", tag]).returncode == 0


def _digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:16]


def apt_mirror(sources: Path = APT_SOURCES) -> str:
    """The host's Debian mirror (the first ``URIs:`` of its deb822 sources), which debootstrap
    then uses too, so the image comes from where the host's own packages do."""
    for line in sources.read_text().splitlines():
        if line.startswith("URIs:"):
            return line.split()[1]
    raise RuntimeError(f"{sources}: no 'URIs:' line, so no Debian mirror to build the base image from")


def base_tag() -> str:
    spec = json.dumps({"suite": BASE_SUITE, "variant": "minbase", "include": BASE_PACKAGES}).encode()
    return f"localhost/skillflow-base:{BASE_SUITE}-{_digest([spec])}"


def ensure_base(log=print) -> str:
    tag = base_tag()
    if exists(tag):
        return tag
    if not shutil.which("debootstrap"):
        raise RuntimeError("debootstrap is not installed (the Makefile's APT_PACKAGES has it: run `make deps`)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="skillflow-base-") as tmp:
        root = Path(tmp) / "root"
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", BASE_SUITE, str(root),
              apt_mirror()])
        # apt's caches and lists are not part of the image; a Dockerfile that needs apt updates first.
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (root / sub).glob("*"):
                if item.is_file():
                    item.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        _run(["podman", "import", "--quiet", "--change", "ENV PATH=/usr/local/bin:/usr/bin:/bin", "-", tag],
             stdin=tar.stdout)
        if tar.wait() != 0:
            raise RuntimeError(f"tar of the debootstrap root failed (rc {tar.returncode})")
    log(f"built {tag} in {time.monotonic() - started:.0f} s")
    _prune(tag.split(":")[0], keep=tag)
    return tag


#: What goes into the images' skillflow wheel: as the cluster images' Dockerfile.dockerignore files
#: allow, the packages that run there and not the development tooling (devtools/).
WHEEL_PACKAGES = ("tasks", "operators")


def _sources() -> list[Path]:
    """What skillflow's wheel is made of (pyproject and the packages with their data files)."""
    files = [ROOT / "pyproject.toml"]
    for package in WHEEL_PACKAGES:
        files += sorted(p for p in (ROOT / package).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    return files


def image_tag(image: LocalImage, base: str) -> str:
    parts = [base.encode(), image.name.encode(), (ROOT / DOCKERFILE).read_bytes()]
    parts += [(ROOT / f).read_bytes() for f in CONTEXT_FILES]
    parts += [(ROOT / r).read_bytes() for r in (*image.requirements, *image.constraints)]
    parts += [str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes() for p in _sources()]
    return f"{image.repository}:{_digest(parts)}"


def _context(image: LocalImage, into: Path) -> None:
    """The build context: the Dockerfile and its script, the image's pin files with a wheelhouse
    each (a folder per pin file, so that the same pins make the same COPY layer in every image),
    and skillflow's wheel."""
    shutil.copy(ROOT / DOCKERFILE, into / "Dockerfile")
    for f in CONTEXT_FILES:
        shutil.copy(ROOT / f, into / Path(f).name)
    constraints = [arg for c in image.constraints for arg in ("--constraint", str(ROOT / c))]
    for r in image.requirements:
        shutil.copy(ROOT / r, into / Path(r).name)
        # With their dependencies: the image's `pip check` then tells a pin file that is not whole.
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(into / "deps" / Path(r).stem),
              "--requirement", str(ROOT / r), *constraints])
    with tempfile.TemporaryDirectory(prefix="skillflow-wheel-") as src:
        shutil.copy(ROOT / "pyproject.toml", src)
        for package in WHEEL_PACKAGES:
            shutil.copytree(ROOT / package, Path(src) / package, ignore=shutil.ignore_patterns("__pycache__"))
        _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(into / "skillflow"),
              src])


def checkout_tag(root: Path = ROOT) -> str:
    """The tag the local profile names each image by (``${SKILLFLOW_IMAGE_TAG}``): one per
    checkout, moved onto the build of that checkout's current code by :func:`ensure`, so that a
    profile never needs a content hash and two checkouts on one machine never run each other's."""
    return "checkout-" + hashlib.sha256(str(root).encode()).hexdigest()[:12]


def ensure(image: LocalImage, log=print) -> str:
    """The image's content tag, built first (with the base, if that is missing too) if podman
    lacks it, and named by this checkout's tag too."""
    base = ensure_base(log)
    tag = image_tag(image, base)
    if exists(tag):
        _run(["podman", "tag", tag, f"{image.repository}:{checkout_tag()}"])
        return tag
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"skillflow-image-{image.name}-") as tmp:
        _context(image, Path(tmp))
        # No network inside the build: every package comes from the context's wheelhouse.
        _run(["podman", "build", "--network", "none", "--target", image.name, "--build-arg", f"BASE={base}",
              "--tag", tag, tmp])
    log(f"built {tag} in {time.monotonic() - started:.0f} s")
    _run(["podman", "tag", tag, f"{image.repository}:{checkout_tag()}"])
    _prune(image.repository, keep=tag)
    return tag


#: Tags kept per image: the newest few, so that checkouts side by side (a CI clone beside the
#: working one) do not rebuild each other's, while every code change does not add 2 GB for good.
KEEP_TAGS = 3


def _prune(repository: str, keep: str) -> None:
    listed = subprocess.run(["podman", "images", "--sort", "created", "--format", "{{.Repository}}:{{.Tag}}",
                             "--filter", f"reference={repository}"], capture_output=True, text=True).stdout.split()
    # Only content tags (a hash) age out; a checkout's own tag goes with the last build it names.
    content = [t for t in listed if re.fullmatch(r"[0-9a-f]{16}|bookworm-[0-9a-f]{16}", t.rsplit(":", 1)[1])]
    old = [t for t in content if t != keep][KEEP_TAGS - 1:]
    if old:
        subprocess.run(["podman", "rmi", "--force", *old], capture_output=True)


def ensure_all(log=print) -> dict[str, str]:
    return {image.name: ensure(image, log) for image in IMAGES}


def main(argv: list[str] | None = None) -> int:
    tags = ensure_all(lambda line: print(line, file=sys.stderr))
    print(json.dumps(tags, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
