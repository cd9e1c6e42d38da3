"""Everything the README shows is run: its Python examples, and its zoo table is current."""

from __future__ import annotations

import os
import re

from atrous.cli import main


def test_readme_python_examples_run(repo_root):
    text = (repo_root / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "the README shows Python usage"
    cwd = os.getcwd()
    os.chdir(repo_root)
    try:
        for block in blocks:
            exec(compile(block, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)


def test_readme_zoo_table_is_current(repo_root, capsys):
    assert main(["zoo"]) == 0
    table = capsys.readouterr().out.strip()
    text = (repo_root / "README.md").read_text()
    shown = re.search(r"<!-- zoo:start -->\n(.*?)\n<!-- zoo:end -->", text, flags=re.S).group(1).strip()
    assert shown == table, "README zoo table is stale: paste the output of `atrous zoo`"
