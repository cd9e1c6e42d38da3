"""MkDocs hooks (mkdocs.yml): the site's home page is the README (its ``docs/`` links made
relative to the site), and the API reference is generated from the docstrings of the public
modules, so that neither exists twice in the repository."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
# The modules a user imports: the package's front door, then one per task.
API_MODULES = (
    "atrous",
    "atrous.models.build",
    "atrous.models.segmentor",
    "atrous.models.pretrained",
    "atrous.engines.build",
    "atrous.engines.base",
    "atrous.evaluation.inference",
    "atrous.evaluation.predict_app",
    "atrous.evaluation.metrics",
    "atrous.serve.service",
    "atrous.serve.app",
    "atrous.serve.batcher",
)


def on_files(files, config):  # noqa: ANN001, ANN201 - MkDocs' hook signature
    readme = (ROOT / "README.md").read_text(encoding="utf-8").replace("](docs/", "](")
    files.append(File.generated(config, "index.md", content=readme))
    api = "# API reference\n\nGenerated from the docstrings.\n\n" + "\n".join(f"::: {name}\n" for name in API_MODULES)
    files.append(File.generated(config, "api.md", content=api))
    return files
