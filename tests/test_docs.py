"""The door and the docs: each extending tutorial's code runs as written (in a fresh interpreter, so its
registrations touch no other test), the README stays one screen of at most 200 lines, and its headline table is the
one ``make tables`` makes from the committed records now."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from nasiam_bench.core.registry import NasiamBenchError
from nasiam_bench.report.headline import END, START, headline, readme_parts, write_headline

REPO = Path(__file__).resolve().parent.parent
TUTORIALS = {  # page -> what its code prints when it ran to the end
    "activation.md": "MoCo with a squareplus projector: loss",
    "framework.md": "genotype heads: loss",
    "strategy.md": "{'projector': [",
}


def _code(page: Path) -> str:
    return "\n".join(re.findall(r"```python\n(.*?)```", page.read_text(), re.S))


@pytest.mark.parametrize("page", sorted(TUTORIALS))
def test_each_tutorial_runs_as_written(page):
    done = subprocess.run(
        [sys.executable, "-c", _code(REPO / "docs" / "extending" / page)],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert TUTORIALS[page] in done.stdout, done.stdout


def test_the_example_pretrains_a_genotypes_head_on_the_public_api():
    ops = "projector=linear_elu,identity,avgpool_3x3,linear_relu"
    done = subprocess.run(
        [sys.executable, "examples/pretrain_one_head.py", "moco", "--ops", ops, "--steps", "2", "--batch", "16"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "step 2/2: loss" in done.stdout and "kNN top-1 after:" in done.stdout


def test_the_readme_is_one_screen_and_its_headline_is_made_from_the_records():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    block = readme.split(START, 1)[1].split(END, 1)[0].strip()
    assert block == headline(REPO / "results").strip(), "README's headline is stale: run make tables"


def test_the_headline_is_written_between_the_markers_and_a_readme_without_them_is_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n{START}\nold\n{END}\ntail\n")
    write_headline(readme, REPO / "results")
    text = readme.read_text()
    assert text.startswith("# title\n") and text.endswith(f"{END}\ntail\n") and "old" not in text
    assert "| framework | baseline |" in text
    readme.write_text("# no markers\n")
    with pytest.raises(NasiamBenchError, match="no headline markers"):
        readme_parts(readme)
