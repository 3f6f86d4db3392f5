"""The mutation script (tests/mutants.py) must keep naming code that exists: a mutant whose text
or test path went stale after a refactor would be refused at run time, long after the move."""
from pathlib import Path

import pytest

from tests.mutants import MUTANTS, ROOT


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_each_mutant_names_text_found_once_and_tests_that_exist(mutant):
    source = (ROOT / mutant.path).read_text()
    assert source.count(mutant.original) == 1, f"{mutant.name}: original text not found exactly once in {mutant.path}"
    for test in mutant.tests:
        assert (ROOT / test.split("::")[0]).is_file(), f"{mutant.name}: no test file {test}"
        if "::" in test:
            name = test.split("::")[1]
            assert f"def {name}(" in Path(ROOT / test.split("::")[0]).read_text(), f"{mutant.name}: no test {test}"
