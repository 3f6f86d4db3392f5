"""The pinned benchmark sources: fixed commits, sha256 values, and the verified download path (no network)."""
import hashlib
import re
from pathlib import Path

import pytest

from tasks.openmath.datasets import prepare as prep
from tasks.openmath.datasets.sources import SOURCES, SourceFile
from tests.prereqs import SHARED_DATA as SHARED, needs_shared


ALL = [(b, k, src) for b, files in sorted(SOURCES.items()) for k, src in sorted(files.items())]
IDS = [f"{b}-{k}" for b, k, _ in ALL]
RAW_AT_COMMIT = re.compile(r"^https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/([0-9a-f]{40})/\S+$")


@pytest.mark.parametrize(("benchmark", "key", "src"), ALL, ids=IDS)
def test_every_url_names_a_fixed_commit(benchmark, key, src):
    if src.url is None:
        assert src.note, f"{benchmark}/{key}: no URL and no note saying why"
        return
    assert RAW_AT_COMMIT.match(src.url), f"{benchmark}/{key}: {src.url} is not a raw GitHub URL at a 40-hex commit"
    assert not re.search(r"/(master|main)/", src.url)
    assert src.url.endswith("/" + Path(src.name).name)


@pytest.mark.parametrize(("benchmark", "key", "src"), ALL, ids=IDS)
def test_sha256_is_pinned_or_explained(benchmark, key, src):
    if src.sha256 is None:
        assert src.note, f"{benchmark}/{key}: sha256 not pinned and no note saying why"
    else:
        assert re.fullmatch(r"[0-9a-f]{64}", src.sha256)


def test_same_repository_same_commit():
    commits: dict[str, set[str]] = {}
    for _, _, src in ALL:
        if src.url:
            owner, repo, commit = src.url.split("/")[3:6]
            commits.setdefault(f"{owner}/{repo}", set()).add(commit)
    assert all(len(c) == 1 for c in commits.values()), commits


def test_pinned_files():
    pinned = {f"{b}/{k}" for b, k, src in ALL if src.sha256}
    assert pinned == {"gsm8k/train", "gsm8k/test", "algebra222/test"}


@needs_shared
def test_gsm8k_train_pin_matches_the_full_shared_copy():
    src = SOURCES["gsm8k"]["train"]
    data = (SHARED / src.name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == src.sha256
    assert data.count(b"\n") == src.records and data.endswith(b"\n")


@needs_shared
@pytest.mark.parametrize(("benchmark", "records", "lines"), [("algebra222", 200, 200), ("gsm8k", 1187, 1187)])
def test_partial_shared_copies_do_not_match_their_pins(benchmark, records, lines):
    # These shared copies have records held out, so they must not match the pin of the full upstream file.
    src = SOURCES[benchmark]["test"]
    data = (SHARED / src.name).read_bytes()
    assert hashlib.sha256(data).hexdigest() != src.sha256
    assert data.count(b"\n") == lines and records < src.records


@needs_shared
def test_download_of_a_pinned_file_verifies_it(tmp_path):
    # The download path with the real pin, served from the full shared copy by a file:// URL (no network).
    pinned = SOURCES["gsm8k"]["train"]
    local = SourceFile(pinned.name, (SHARED / pinned.name).as_uri(), pinned.records, sha256=pinned.sha256)
    dest = tmp_path / "train.jsonl"
    assert prep.download(local, dest, skip_sha256=False, log=lambda _: None) == dest
    assert prep.sha256_of(dest) == pinned.sha256
    # A pinned file that does not match is refused even with --skip-sha256.
    dest.write_bytes(dest.read_bytes()[:-1])
    with pytest.raises(prep.PrepareError, match="does not match the pinned"):
        prep.download(local, dest, skip_sha256=True, log=lambda _: None)
