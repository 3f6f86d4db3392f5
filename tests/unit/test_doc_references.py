"""Every section reference in the repository (``docs/recipes/<recipe>.md §N.M``) names a section
that exists, so a reader can follow it without anything outside the checkout."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "docs" / "recipes"
# A reference, then any sections chained onto it: "§3, §4", "§0/§1", "§8.3–§9".
REFERENCE = re.compile(r"docs/recipes/([a-z_]+)\.md ((?:§\d+(?:\.\d+)?(?:\s*[,/–-]\s*|,? and )?)+)")
SECTION = re.compile(r"§(\d+(?:\.\d+)?)")
ANCHOR = re.compile(r'<a id="s(\d+(?:\.\d+)?)"></a>')


def _text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    out = []
    for name in names:
        path = ROOT / name
        if name.startswith("tests/golden/") or not path.is_file() or path.suffix in (".png", ".gguf"):
            continue
        try:
            out.append((path, path.read_text(encoding="utf-8")))
        except UnicodeDecodeError:
            continue
    return out


def test_every_recipe_section_reference_resolves():
    anchors = {doc.stem: set(ANCHOR.findall(doc.read_text(encoding="utf-8"))) for doc in RECIPES.glob("*.md")}
    assert set(anchors) == {"openmath", "apps_sft"} and all(anchors.values())
    missing, seen = [], 0
    for path, text in _text_files():
        for m in REFERENCE.finditer(text):
            for section in SECTION.findall(m.group(2)):
                seen += 1
                if m.group(1) not in anchors or section not in anchors[m.group(1)]:
                    line = text.count("\n", 0, m.start()) + 1
                    missing.append(f"{path.relative_to(ROOT)}:{line}: docs/recipes/{m.group(1)}.md §{section}")
    assert seen > 80  # the code cites the recipes about a hundred times
    assert not missing, "\n".join(missing)


def test_no_reference_points_outside_the_repository():
    outside = [f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
               for path, text in _text_files() if path.parent != RECIPES and path != Path(__file__).resolve()
               for m in re.finditer(r"\bspec [a-z_]*\s?§|\b(?:openmath|apps_sft?) spec\b|shared/spec", text)]
    assert not outside, "\n".join(outside)
