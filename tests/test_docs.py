"""Everything the README and the guides in docs/ show is run: their Python examples (from a
folder outside the checkout, as a user of the installed package would run them), and the
README's zoo table is current."""

from __future__ import annotations

import re
import shlex
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


# The encoder guide builds timm networks at full size: its examples run in the slow tier.
SLOW_PAGES = {"docs/encoders.md"}
PYTHON_PAGES = [pytest.param(p, id=p.relative_to(REPO).as_posix(),
                             marks=[pytest.mark.slow] if p.relative_to(REPO).as_posix() in SLOW_PAGES else [])
                for p in PAGES if python_blocks(p)]


@pytest.mark.parametrize("page", PYTHON_PAGES)
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


# -- the own-data guides' commands ---------------------------------------------------------------

OWN_DATA_PAGES = [REPO / "docs" / "datasets.md", REPO / "docs" / "errors_and_checks.md"]


def shell_commands(page: Path) -> list[tuple[str, int]]:
    """``(command, expected exit status)`` for each ``atrous …`` line of the page's bash blocks:
    2 when the next line shows the error (``# atrous: error: …``), else 0."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
        lines = block.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("atrous "):
                fails = i + 1 < len(lines) and lines[i + 1].startswith("# atrous: error:")
                commands.append((line, 2 if fails else 0))
    return commands


def test_the_own_data_guides_commands_run(tmp_path, monkeypatch, capsys):
    """The example folder of docs/datasets.md (its Python block), then every command of that page
    and of docs/errors_and_checks.md, in order, from a folder outside the checkout."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in python_blocks(OWN_DATA_PAGES[0]):
        exec(compile(block, "docs/datasets.md", "exec"), namespace)
    ran = []
    for page in OWN_DATA_PAGES:
        for command, status in shell_commands(page):
            argv = shlex.split(command, comments=True)[1:]
            assert main(argv) == status, (page.name, command, capsys.readouterr())
            ran.append(argv[0])
    assert ran.count("check-data") == 4 and ran.count("fit") == 3 + 2  # and the config checks' fits
    assert (tmp_path / "runs" / "my_data" / "splits" / "val.txt").read_text().count("\n") == 2
    assert (tmp_path / "check_report" / "class_pixels.png").is_file()
