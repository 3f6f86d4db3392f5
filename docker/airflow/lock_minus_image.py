"""Print the lines of a pip lock that the running Python does not already have at that version.

Used while building the Airflow image: the official image already ships Airflow and many of
our dependencies, so only the difference is installed (with the whole lock as constraints, so
nothing drifts from it). Packages the image has at another version are listed on stderr,
because the build then replaces the image's version with the lock's.

    python lock_minus_image.py requirements.txt [--exclude NAME ...] > delta.txt

``--exclude`` drops packages the deployment does not need although the lock has them (test
tools, the local profile's model server); they stay usable as constraints.
"""
from __future__ import annotations

import re
import sys
from importlib import metadata
from typing import Iterable, Mapping

_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def canonical(name: str) -> str:
    """PEP 503 name: case-insensitive, runs of ``-_.`` are one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(lines: Iterable[str]) -> list[tuple[str, str, str]]:
    """(canonical name, version, original line) for every ``name==version`` line; others raise."""
    pins = []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN.match(line)
        if match is None:
            raise ValueError(f"lock line {number} is not an exact pin (name==version): {line!r}")
        pins.append((canonical(match.group(1)), match.group(3), line))
    return pins


def delta(pins: Iterable[tuple[str, str, str]], installed: Mapping[str, str],
          exclude: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """(lines to install, notes on versions the image has that the lock replaces)."""
    skip = {canonical(name) for name in exclude}
    install, notes = [], []
    for name, version, line in pins:
        if name in skip:
            continue
        have = installed.get(name)
        if have == version:
            continue
        install.append(line)
        if have is not None:
            notes.append(f"{name}: image has {have}, lock wants {version}")
    return install, notes


def installed_versions() -> dict[str, str]:
    return {canonical(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock")
    parser.add_argument("--exclude", action="append", default=[], metavar="NAME")
    args = parser.parse_args(argv[1:])
    with open(args.lock, encoding="utf-8") as fh:
        pins = parse_lock(fh)
    unknown = sorted({canonical(n) for n in args.exclude} - {name for name, _, _ in pins})
    if unknown:
        parser.error(f"--exclude names packages the lock does not have: {', '.join(unknown)}")
    install, notes = delta(pins, installed_versions(), args.exclude)
    for note in notes:
        print(f"lock_minus_image: {note}", file=sys.stderr)
    print(f"lock_minus_image: {len(install)} of the lock's packages to install", file=sys.stderr)
    sys.stdout.write("".join(f"{line}\n" for line in install))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
