"""One reader per benchmark: original file(s) -> list of NeMo-Skills records (docs/recipes/openmath.md §2).

Readers take the resolved paths of the source files and return records in file order; splitting
and writing live in :mod:`tasks.openmath.datasets.prepare`. Each record has ``question`` and
``expected_answer`` (int when integral, else float or str) plus the benchmark's extra fields.
"""
from __future__ import annotations

import csv
import json
import re
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Callable

from tasks.grading.answer import extract_boxed
from tasks.grading.normalize import normalize_answer_string
from tasks.openmath.datasets.sources import (
    MATH_ANSWER_FIXES,
    MATH_BACKSLASH_DIGIT_FIX_ID,
    MATH_BACKSLASH_DIGIT_FIX_TORA_IDX,
    MATH_EQUATION_MARKERS,
)
from tasks.storage.jsonl import iter_jsonl

Record = dict[str, Any]
_CALC = re.compile(r"<<.*?>>")
_GSM8K_FIXES_FILE = Path(__file__).with_name("gsm8k_train_fixes.json")


class SourceFormatError(ValueError):
    """An original file does not look as expected; the message names the file (and record)."""


def int_if_integral(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def gsm8k_fixes() -> dict[str, Any]:
    return json.loads(_GSM8K_FIXES_FILE.read_text(encoding="utf-8"))["fixes"]


def read_gsm8k(path: Path, *, apply_fixes: bool) -> list[Record]:
    """Split ``answer`` on ``####``; the solution loses ``<<calc>>`` notes; train fixes applied."""
    fixes = gsm8k_fixes() if apply_fixes else {}
    out = []
    for n, row in enumerate(iter_jsonl(path), start=1):
        solution, sep, answer = row["answer"].partition("####")
        if not sep:
            raise SourceFormatError(f"{path}: record {n} has no '####' in its answer")
        expected = int_if_integral(float(answer.replace(",", "")))
        if row["question"] in fixes:
            expected = fixes[row["question"]]
        out.append({"question": row["question"], "expected_answer": expected,
                    "reference_solution": _CALC.sub("", solution)})
    return out


def math_expected_answer(solution: str, question: str, problem_id: str) -> str:
    """Last boxed answer, normalised; "x = 5" keeps "5" unless the question asks for an equation."""
    answer = extract_boxed(solution)
    if answer is None:  # e.g. "\boxed 5$": take what follows the last \boxed up to the last "$"
        tail = solution[solution.rfind("\\boxed") + len("\\boxed"):]
        answer = tail[: tail.rfind("$")]
    answer = normalize_answer_string(answer)
    wants_equation = any(marker in question for marker in MATH_EQUATION_MARKERS)
    if not wants_equation and answer.count("=") == 1:
        answer = answer.split("=")[1]
    if problem_id == MATH_BACKSLASH_DIGIT_FIX_ID:
        answer = re.sub(r"\\(\d+)", r"\1", answer)
    return MATH_ANSWER_FIXES.get(problem_id, answer)


def _math_folder(problem_type: str) -> str:
    return problem_type.lower().replace(" ", "_").replace("&", "and")


def _math_record(content: dict, problem_id: str, folder: str, where: str) -> Record:
    if _math_folder(content["type"]) != folder:
        raise SourceFormatError(f"{where}: type {content['type']!r} does not match folder {folder!r}")
    return {
        "question": content["problem"],
        "reference_solution": content["solution"],
        "level": content["level"],
        "type": content["type"],
        "id": problem_id,
        "expected_answer": math_expected_answer(content["solution"], content["problem"], problem_id),
    }


def read_math_tar(path: Path, split: str) -> list[Record]:
    """Records of ``split`` (train/test) from a MATH tar (``MATH/<split>/<subject>/<n>.json``).

    Kept in tar member order, as upstream: the seeded shuffle of train depends on it.
    """
    out = []
    with tarfile.open(path, "r:*") as tar:
        for member in tar:
            if not member.isfile() or not member.name.endswith(".json"):
                continue
            parts = member.name.split("/")
            if len(parts) < 4 or parts[-3] != split:
                continue
            folder, file_name = parts[-2], parts[-1]
            problem_id = f"{split}/{folder}/{file_name}"
            content = json.loads(tar.extractfile(member).read())
            out.append(_math_record(content, problem_id, folder, f"{path}:{member.name}"))
    return out


def read_math_tora_test(path: Path) -> list[Record]:
    """MATH test from ToRA's jsonl. It has no file numbers, so ``id`` is ``test/<subject>/idx<i>``
    (``i`` = ToRA's ``idx``, kept too) and the one id-keyed fix is applied by index."""
    out = []
    for n, row in enumerate(iter_jsonl(path), start=1):
        folder = _math_folder(row["type"])
        idx = row["idx"]
        fix_id = MATH_BACKSLASH_DIGIT_FIX_ID if idx == MATH_BACKSLASH_DIGIT_FIX_TORA_IDX else f"test/{folder}/idx{idx}"
        rec = _math_record(row, fix_id, folder, f"{path}:{n}")
        rec["id"] = f"test/{folder}/idx{idx}"
        rec["idx"] = idx
        out.append(rec)
    return out


def read_asdiv(path: Path) -> list[Record]:
    """Body + " " + Question; the answer before its first "(" (a units note), kept as a string."""
    out = []
    for problem in ET.parse(path).getroot().iter("Problem"):
        def text(tag: str) -> str:
            node = problem.find(tag)
            if node is None or node.text is None:
                raise SourceFormatError(f"{path}: problem {problem.get('ID')} has no <{tag}>")
            return node.text

        out.append({"question": text("Body") + " " + text("Question"),
                    "expected_answer": text("Answer").split("(")[0].strip(),
                    "type": text("Solution-Type")})
    return out


def read_gsm_hard(path: Path) -> list[Record]:
    return [{"question": r["input"], "expected_answer": int_if_integral(r["target"])} for r in iter_jsonl(path)]


def read_mawps(paths: dict[str, Path]) -> list[Record]:
    out = []
    for subset, path in paths.items():
        out += [{"question": r["input"], "expected_answer": int_if_integral(r["target"]), "type": subset}
                for r in iter_jsonl(path)]
    return out


def read_svamp(path: Path) -> list[Record]:
    out = []
    for item in json.loads(path.read_text(encoding="utf-8")):
        body = item["Body"]
        if body and body[-1].isalpha():
            body += "."
        out.append({"question": body + " " + item["Question"],
                    "expected_answer": int_if_integral(item["Answer"]),
                    "reference_equation": item["Equation"]})
    return out


def read_tabmwp(path: Path) -> list[Record]:
    out = []
    for item in json.loads(path.read_text(encoding="utf-8")).values():
        question = ("Read the following table and then answer the question that follows.\n"
                    f"{item['table']}\n\n{item['question']}")
        if item["ques_type"] == "multi_choice":
            question += "\nAnswer options:\n" + ", ".join(item["choices"])
        answer: Any = item["answer"]
        if item["ans_type"] == "integer_number":
            answer = int(answer.replace(",", ""))
        out.append({"question": question, "expected_answer": answer,
                    "reference_solution": item["solution"], "grade": item["grade"]})
    return out


def read_algebra222(path: Path) -> list[Record]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [{"question": row["question"], "expected_answer": int_if_integral(float(row["final_answer"]))}
                for row in csv.DictReader(fh)]


READERS: dict[str, Callable[..., list[Record]]] = {
    "asdiv": read_asdiv, "gsm-hard": read_gsm_hard, "svamp": read_svamp,
    "tabmwp": read_tabmwp, "algebra222": read_algebra222,
}
