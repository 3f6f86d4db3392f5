"""Where each benchmark's original files come from, and how many records they hold.

Facts as data. ``name`` is the path under a ``--source`` folder laid out like the shared data
folder (original file names). ``records`` is the upstream size (docs/recipes/openmath.md §2); a full download must
match it exactly. Every URL names a fixed commit (the one the shared data README copied the file
from), never a moving branch, so the bytes behind it cannot change. ``sha256`` pins those bytes.
It is set only where we have proved the upstream file byte for byte: gsm8k train (the shared copy
is the whole file, so the shared README's digest is the upstream one) and files rebuilt from a
stored copy of the upstream repository, whose records minus the held-out ones give back the
shared copy byte for byte. Elsewhere it is ``None`` and ``note`` says why (the hashes in the
shared data README are of copies with records held out, so they cannot pin upstream files).
Downloading an unpinned file needs ``--skip-sha256``, and the digest is printed so it can be
pinned here.
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

# Commits the shared data README names for each upstream repository.
GSM8K_COMMIT = "3101c7d5072418e28b9008a6636bde82a006892c"     # openai/grade-school-math
TORA_COMMIT = "213c1c995038c73fab10343814df7a42f990f026"      # microsoft/ToRA
ASDIV_COMMIT = "883f90a9a65bf00304ba8f37423910fe743abc47"     # chaochun/nlu-asdiv-dataset
PAL_COMMIT = "f81ca2a9777f002f98a6b4d0f10b61bd5c8feb02"       # reasoning-machines/pal
SVAMP_COMMIT = "689d7ccac74b9983a2ac7cc3b264f441b99e7c53"     # arkilpatel/SVAMP
PROMPTPG_COMMIT = "7cf61b1bec07222fc24b4f5a1410911f77c2d2c9"  # lupantech/PromptPG
ALGEBRA222_COMMIT = "7dc99c39f53e108103a84ff8c7ef5d4857ad34ff"  # joyheyueya/declarative-math-word-problem

NOT_SEEN = ("not pinned: no stored copy of the upstream file at any commit was available to us, "
            "and the shared copy has records held out, so its sha256 is not the upstream one")

SOURCES: dict[str, dict[str, SourceFile]] = {
    "gsm8k": {
        # The shared copy holds all 7473 records: its sha256 (shared data README) is the upstream one.
        "train": SourceFile("gsm8k/train.jsonl",
                            f"{RAW}/openai/grade-school-math/{GSM8K_COMMIT}/grade_school_math/data/train.jsonl", 7473,
                            sha256="17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465"),
        # Rebuilt from stored copies of the repository, which has none at GSM8K_COMMIT itself: the file at commit
        # b52325ad (and, for its first 749 lines, at 056bb100, a pull-request edit of line 750). 1319 lines, 749738
        # bytes, trailing newline; the shared copy (from GSM8K_COMMIT) is exactly those lines minus every tenth one
        # from line 8 on, byte for byte. Should the file at GSM8K_COMMIT differ, the download fails with its digest.
        "test": SourceFile("gsm8k/test.jsonl",
                           f"{RAW}/openai/grade-school-math/{GSM8K_COMMIT}/grade_school_math/data/test.jsonl", 1319,
                           sha256="3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"),
    },
    "math": {
        "tar": SourceFile("math/MATH.tar", None, 12500, note=MATH_TAR_DEAD),
        # Shared-folder layout: the test split as ToRA ships it, the train tree re-packed.
        "test": SourceFile("math/test.jsonl", f"{RAW}/microsoft/ToRA/{TORA_COMMIT}/src/data/math/test.jsonl", 5000,
                           note=NOT_SEEN),
        "train": SourceFile("math/MATH_train.tar.gz", None, 7500, note=MATH_TAR_DEAD),
    },
    "asdiv": {"test": SourceFile("asdiv/ASDiv.xml", f"{RAW}/chaochun/nlu-asdiv-dataset/{ASDIV_COMMIT}/dataset/ASDiv.xml",
                                 2305, note=NOT_SEEN)},
    # NeMo-Skills downloads gsmhardv2.jsonl from the Hugging Face dataset reasoning-machines/gsm-hard at the moving
    # revision "main", which we can neither reach nor pin. The shared copy is the file of the same name in the same
    # authors' GitHub repository, so we download that one, at the commit the shared copy came from. (The two were
    # never compared byte for byte; see the shared data README.)
    "gsm-hard": {"test": SourceFile("gsm-hard/gsmhardv2.jsonl",
                                    f"{RAW}/reasoning-machines/pal/{PAL_COMMIT}/datasets/gsmhardv2.jsonl", 1319,
                                    note=NOT_SEEN)},
    "mawps": {
        subset: SourceFile(f"mawps/{subset}.jsonl", f"{RAW}/microsoft/ToRA/{TORA_COMMIT}/src/data/mawps/{subset}.jsonl",
                           size, note=NOT_SEEN)
        for subset, size in (("addsub", 395), ("singleeq", 508), ("singleop", 562), ("multiarith", 600))
    },
    "svamp": {"test": SourceFile("svamp/SVAMP.json", f"{RAW}/arkilpatel/SVAMP/{SVAMP_COMMIT}/SVAMP.json", 1000,
                                 note=NOT_SEEN)},
    "tabmwp": {"test": SourceFile("tabmwp/problems_test1k.json",
                                  f"{RAW}/lupantech/PromptPG/{PROMPTPG_COMMIT}/data/tabmwp/problems_test1k.json", 1000,
                                  note=NOT_SEEN)},
    # Rebuilt from a stored copy of the repository at this commit (222 rows, 61752 bytes, no trailing newline); the
    # shared copy is exactly those rows minus 22, byte for byte.
    "algebra222": {"test": SourceFile("algebra222/algebra222.csv",
                                      f"{RAW}/joyheyueya/declarative-math-word-problem/{ALGEBRA222_COMMIT}/algebra222.csv",
                                      222, sha256="9fa0171d2d427c5b3df1c3ba543317e32366ca5d2c0a843f55d40cec6b528a28")},
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

# Questions asking for an equation keep "y = ..." answers whole (docs/recipes/openmath.md §2, math).
MATH_EQUATION_MARKERS = ("Find the equation", "Enter the equation", "What is the equation",
                         "described by the equation", "Find an equation")

SFT_SYSTEM = ("You're an expert Python programmer and mathematician. Help the user to solve this "
              "problem using code when necessary. Make sure to put the answer (and only answer) "
              "inside \\boxed{}.")
