#!/usr/bin/env python3
"""Print who imports whom between atrous' layers, and every import that looks up a floor.

    python scripts/layers.py            # the layer picture: floor → floors it imports
    python scripts/layers.py --edges    # every module-level and function-level import between layers

It also prints every import circle between modules (imports inside functions count too; a
package's ``__init__`` importing its own modules does not).

Floors, bottom to top (a floor may import only floors below it, and itself):
config / io / errors / devices / lazy / hardware → data → models → engines → evaluation → training, analysis, serve → deploy
→ cli, demo. (deploy: benchmarks and quantization reports, which evaluate with the training loop.)
tests/test_layers.py runs the same check.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "atrous"
FLOORS = {
    "config": 0, "io": 0, "errors": 0, "configs": 0, "devices": 0, "lazy": 0, "hardware": 0,
    "data": 1,
    "models": 2,
    "engines": 3,
    "evaluation": 4,
    "training": 5, "analysis": 5, "serve": 5,
    "deploy": 6,
    "cli": 7, "demo": 7, "__init__": 7, "__main__": 7,
}


def part_of(module: str) -> str:
    """``atrous.models.heads.aspp`` → ``models``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1] if len(parts) > 1 else parts
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, int]]:
    """Absolute names of the atrous modules a file imports (anywhere in it), with line numbers."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("atrous"):
                found.append((target, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("atrous")]
    return found


def edges() -> list[tuple[str, str, str, int]]:
    """``(from part, to part, file, line)`` for every import between two different parts."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = part_of(module_name(path))
        for target, line in imports(path):
            dest = part_of(target)
            if dest != source:
                out.append((source, dest, str(path.relative_to(PACKAGE.parent)), line))
    return out


def violations() -> list[tuple[str, str, str, int]]:
    """Imports from a lower floor up to a higher one (or between parts of one floor)."""
    return [(s, d, f, n) for s, d, f, n in edges()
            if FLOORS[d] > FLOORS[s] or (FLOORS[d] == FLOORS[s] and FLOORS[s] not in (0, 7))]


def module_graph() -> dict[str, set[str]]:
    """Module → the atrous modules it imports (``from ..models import x`` → ``atrous.models``)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}

    def resolve(target: str) -> str:  # ``atrous.models.build.build_model`` → ``atrous.models.build``
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        own = name + "." if path.name == "__init__.py" else None
        targets = {resolve(t) for t, _ in imports(path)}
        graph[name] = {t for t in targets if t and t != name and not (own and t.startswith(own))}
    return graph


def circles() -> list[list[str]]:
    """The groups of modules that import one another in a circle (strongly connected, sorted)."""
    graph, order, low, stack, found = module_graph(), {}, {}, [], []

    def visit(node: str) -> None:  # Tarjan's algorithm
        order[node] = low[node] = len(order)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in order:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], order[nxt])
        if low[node] == order[node]:
            group = []
            while not group or group[-1] != node:
                group.append(stack.pop())
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in order:
            visit(node)
    return sorted(found)


def main(argv: list[str]) -> int:
    graph: dict[str, set[str]] = defaultdict(set)
    for source, dest, file, line in edges():
        graph[source].add(dest)
        if "--edges" in argv:
            print(f"{source:>10} → {dest:<10} {file}:{line}")
    print("floor  part        imports")
    for part in sorted(graph, key=lambda p: (FLOORS[p], p)):
        print(f"{FLOORS[part]:>5}  {part:<10}  {', '.join(sorted(graph[part], key=lambda p: (FLOORS[p], p)))}")
    bad = violations()
    for source, dest, file, line in bad:
        print(f"UPWARD: {file}:{line} ({source}, floor {FLOORS[source]}) imports {dest} (floor {FLOORS[dest]})")
    print(f"{len(bad)} upward import(s)")
    loops = circles()
    for group in loops:
        print(f"CIRCLE: {' ↔ '.join(group)}")
    print(f"{len(loops)} import circle(s)")
    return 1 if bad or loops else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
