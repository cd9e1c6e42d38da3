"""The documentation site (mkdocs.yml) builds in strict mode, and strict mode does fail on a
broken link: the home page is the README, the API reference comes from the docstrings."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason='the docs site needs the docs extra: pip install "atrous[docs]"')
pytest.importorskip("material", reason='the docs site needs the docs extra: pip install "atrous[docs]"')

REPO = Path(__file__).resolve().parents[1]


def build(project: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
           "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(project / "mkdocs.yml"),
                           "-d", str(site)], capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_the_site_builds_strictly_and_a_broken_link_fails_it(tmp_path):
    done = build(REPO, tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    home = (tmp_path / "site" / "index.html").read_text()
    assert 'href="training/"' in home  # the README's docs/ links, made relative to the site
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "build_engine" in api and "MicroBatcher" in api
    for page in ("serving", "engines", "configs"):  # the engine table and the zoo are pages
        assert (tmp_path / "site" / page / "index.html").is_file()

    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("mkdocs.yml", "README.md"):
        shutil.copy(REPO / name, copy / name)
    shutil.copytree(REPO / "docs", copy / "docs")
    shutil.copytree(REPO / "scripts", copy / "scripts")
    with open(copy / "docs" / "serving.md", "a") as page:
        page.write("\nSee [the missing page](missing.md).\n")
    broken = build(copy, tmp_path / "broken")
    assert broken.returncode != 0 and "missing.md" in broken.stderr
