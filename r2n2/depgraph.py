"""The project's own import graph, read from the source (``ast``, imports inside functions included).

Two users: the architecture test (no cycle, no driver importing a case: ``tests/test_architecture.py``) and the
DVC code deps of each stage (``r2n2.stages.code_deps``), so a stage reruns when any module it runs changes and
no list of source files is kept by hand. Importing ``a.b.c`` also runs the packages ``a`` and ``a.b``: their
``__init__`` modules count as dependencies (``closure``), not as graph edges.
"""

from __future__ import annotations

import ast
import graphlib
from functools import lru_cache
from pathlib import Path

__all__ = ["ROOT", "Module", "modules", "import_graph", "closure", "source_paths", "find_cycle"]

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("r2n2", "flows")


class Module:
    __slots__ = ("name", "path", "is_package")

    def __init__(self, name: str, path: Path, is_package: bool):
        self.name, self.path, self.is_package = name, path, is_package


@lru_cache(maxsize=4)
def modules(root: Path = ROOT) -> dict[str, Module]:
    """Every module of ``r2n2`` and ``flows`` under ``root``: dotted name -> Module."""
    out = {}
    for pkg in PACKAGES:
        for p in sorted((root / pkg).rglob("*.py")):
            if "__pycache__" in p.parts:
                continue
            parts = list(p.relative_to(root).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_pkg else parts)
            out[name] = Module(name, p, is_pkg)
    return out


def _resolve(name: str, mods: dict[str, Module]) -> str | None:
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


@lru_cache(maxsize=4)
def import_graph(root: Path = ROOT) -> dict[str, frozenset[str]]:
    """Module -> the project modules it imports (at module level or inside a function)."""
    mods = modules(root)
    graph = {}
    for name, m in mods.items():
        base = name.split(".") if m.is_package else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(m.path.read_text(), filename=str(m.path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    mod = ".".join(base[:len(base) - (node.level - 1)] + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                # `from pkg import name` imports pkg.name when it is a module, else a name of pkg
                targets = [f"{mod}.{a.name}" for a in node.names] + [mod]
            for t in targets:
                r = _resolve(t, mods)
                if r and r != name:
                    deps.add(r)
        graph[name] = frozenset(deps)
    return graph


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def closure(starts, root: Path = ROOT) -> set[str]:
    """Every project module that importing ``starts`` can run: the transitive imports, with the packages
    (``__init__``) each of them lives in."""
    graph, mods = import_graph(root), modules(root)
    seen, todo = set(), list(starts)
    while todo:
        m = todo.pop()
        if m in seen or m not in mods:
            continue
        seen.add(m)
        todo.extend(graph[m])
        todo.extend(p for p in _parents(m) if p in mods)
    return seen


def source_paths(names, root: Path = ROOT) -> list[str]:
    """Repository-relative source paths of ``names``; a package folder stands for its files when every module
    under it is in ``names`` (a shorter, equally exact DVC dependency)."""
    mods = modules(root)
    names = set(names)
    folders = []
    for pkg in sorted((n for n, m in mods.items() if m.is_package), key=len):
        if any(pkg.startswith(f + ".") for f in folders):
            continue
        members = [n for n in mods if n == pkg or n.startswith(pkg + ".")]
        if pkg not in PACKAGES and all(n in names for n in members):
            folders.append(pkg)
    covered = {n for n in names for f in folders if n == f or n.startswith(f + ".")}
    paths = [f.replace(".", "/") for f in folders]
    paths += [mods[n].path.relative_to(root).as_posix() for n in names - covered if n in mods]
    return sorted(paths)


def find_cycle(graph: dict[str, frozenset[str]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``), or None (``graphlib`` from the standard library)."""
    try:
        graphlib.TopologicalSorter({k: set(v) for k, v in graph.items()}).prepare()
    except graphlib.CycleError as exc:
        return list(exc.args[1])
    return None
