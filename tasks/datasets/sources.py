"""Where each benchmark's original files come from, and how many records they hold.

Facts as data. ``name`` is the path under a ``--source`` folder laid out like the shared data
folder (original file names). ``records`` is the upstream size (spec §2); a full download must
match it exactly. ``sha256`` pins the upstream bytes; it is ``None`` where we have not seen the
upstream file ourselves (the hashes in the shared data README are of copies with records held
out, so they cannot pin upstream files). Downloading an unpinned file needs ``--skip-sha256``,
and the digest is printed so it can be pinned here.
"""
from __future__ import annotations

from dataclasses import dataclass

RAW = "https://raw.githubusercontent.com"


@dataclass(frozen=True)
class SourceFile:
    name: str
    url: str | None
    records: int
    sha256: str | None = None
    note: str = ""


MATH_TAR_DEAD = (
    "MATH.tar is no longer served at people.eecs.berkeley.edu/~hendrycks/MATH.tar (NeMo-Skills "
    "disabled MATH preparation for that reason); pass --source DIR with math/MATH.tar, or with "
    "math/test.jsonl (ToRA's copy) and math/MATH_train.tar.gz"
)

SOURCES: dict[str, dict[str, SourceFile]] = {
    "gsm8k": {
        "train": SourceFile("gsm8k/train.jsonl", f"{RAW}/openai/grade-school-math/master/grade_school_math/data/train.jsonl", 7473),
        "test": SourceFile("gsm8k/test.jsonl", f"{RAW}/openai/grade-school-math/master/grade_school_math/data/test.jsonl", 1319),
    },
    "math": {
        "tar": SourceFile("math/MATH.tar", None, 12500, note=MATH_TAR_DEAD),
        # Shared-folder layout: the test split as ToRA ships it, the train tree re-packed.
        "test": SourceFile("math/test.jsonl", f"{RAW}/microsoft/ToRA/main/src/data/math/test.jsonl", 5000),
        "train": SourceFile("math/MATH_train.tar.gz", None, 7500, note=MATH_TAR_DEAD),
    },
    "asdiv": {"test": SourceFile("asdiv/ASDiv.xml", f"{RAW}/chaochun/nlu-asdiv-dataset/master/dataset/ASDiv.xml", 2305)},
    "gsm-hard": {"test": SourceFile("gsm-hard/gsmhardv2.jsonl", "https://huggingface.co/datasets/reasoning-machines/gsm-hard/raw/main/gsmhardv2.jsonl", 1319)},
    "mawps": {
        subset: SourceFile(f"mawps/{subset}.jsonl", f"{RAW}/microsoft/ToRA/main/src/data/mawps/{subset}.jsonl", size)
        for subset, size in (("addsub", 395), ("singleeq", 508), ("singleop", 562), ("multiarith", 600))
    },
    "svamp": {"test": SourceFile("svamp/SVAMP.json", f"{RAW}/arkilpatel/SVAMP/main/SVAMP.json", 1000)},
    "tabmwp": {"test": SourceFile("tabmwp/problems_test1k.json", f"{RAW}/lupantech/PromptPG/main/data/tabmwp/problems_test1k.json", 1000)},
    "algebra222": {"test": SourceFile("algebra222/algebra222.csv", f"{RAW}/joyheyueya/declarative-math-word-problem/main/algebra222.csv", 222)},
}

# Benchmarks with a train file also get the shuffled train / validation / train_full splits.
SPLITS: dict[str, tuple[str, ...]] = {
    name: ("test", "train", "validation", "train_full") if name in ("gsm8k", "math") else ("test",)
    for name in SOURCES
}

# MATH expected answers that the boxed-answer rule gets wrong, by problem id. Facts from NVIDIA
# NeMo-Skills (Apache-2.0) datasets/math/prepare.py (Kipok/NeMo-Skills@10c622c1). The test problem
# intermediate_algebra/78 instead has backslashes before digits removed from its answer.
MATH_ANSWER_FIXES: dict[str, str] = {
    "train/number_theory/7115.json": "A",
    "train/number_theory/1012.json": "E",
    "train/prealgebra/666.json": "125",
    "train/intermediate_algebra/172.json": "two lines",
    "train/prealgebra/1691.json": "1.85",
    "train/geometry/6177.json": "C",
    "train/number_theory/7117.json": "A",
    "train/geometry/6202.json": "D",
    "train/precalculus/268.json": "A",
}
MATH_BACKSLASH_DIGIT_FIX_ID = "test/intermediate_algebra/78.json"
# Its index in ToRA's test.jsonl (the sorted list of test paths, see the shared data README).
MATH_BACKSLASH_DIGIT_FIX_TORA_IDX = 2948

# Questions asking for an equation keep "y = ..." answers whole (spec §2, math).
MATH_EQUATION_MARKERS = ("Find the equation", "Enter the equation", "What is the equation",
                         "described by the equation", "Find an equation")

SFT_SYSTEM = ("You're an expert Python programmer and mathematician. Help the user to solve this "
              "problem using code when necessary. Make sure to put the answer (and only answer) "
              "inside \\boxed{}.")
