"""Everything the README and the guides in docs/ show is run: their Python examples (from a
folder outside the checkout, as a user of the installed package would run them), and the
README's zoo table is current."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from atrous.cli import main
from atrous.config import list_configs

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


def test_the_readme_shows_python_usage():
    assert python_blocks(REPO / "README.md")


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.relative_to(REPO).as_posix())
def test_python_examples_run_outside_the_checkout(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}  # the blocks of one page run in order, sharing names, as in a session
    for block in python_blocks(page):
        exec(compile(block, str(page.relative_to(REPO)), "exec"), namespace)


def test_zoo_table_is_current(capsys):
    assert main(["zoo"]) == 0
    table = capsys.readouterr().out.strip()
    text = (REPO / "docs" / "configs.md").read_text()
    shown = re.search(r"<!-- zoo:start -->\n(.*?)\n<!-- zoo:end -->", text, flags=re.S).group(1).strip()
    assert shown == table, "docs/configs.md zoo table is stale: paste the output of `atrous zoo`"
    count = int(re.search(r"(\d+) configs ship with atrous", (REPO / "README.md").read_text()).group(1))
    assert count == len(list_configs()), "the README's config count is stale"


def test_the_readme_stays_a_front_page():
    assert len((REPO / "README.md").read_text().splitlines()) <= 150, "move details into a docs/ page"


def test_every_guide_is_linked_from_the_readme():
    text = (REPO / "README.md").read_text()
    missing = [p.name for p in PAGES[1:] if f"(docs/{p.name})" not in text]
    assert missing == []
