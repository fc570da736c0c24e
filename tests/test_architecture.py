"""Imports go one way (core -> train -> kinds -> cases -> drivers -> registry -> flows), read from the source with
``ast`` (imports inside functions included); the DVC code deps of every stage come from the same graph."""

import os
import shutil
import subprocess
import sys

import pytest
import yaml

from r2n2.depgraph import closure, find_cycle, import_graph, modules, source_paths
from r2n2.registry import REGISTRY
from r2n2.stages import STAGES, code_deps

from .conftest import ROOT

GRAPH = import_graph()
CASES = {type(c).__module__ for c in REGISTRY.values()}          # the concrete case modules
KINDS = {m for m in modules() if m.startswith("r2n2.cases.")} - CASES
DRIVERS = {m for m in modules() if m in ("r2n2.stages", "r2n2.tune", "r2n2.conformance") or m.startswith("r2n2.ops")}
CORE = {m for m in modules() if m.startswith("r2n2.")} - CASES - KINDS - DRIVERS - {"r2n2.registry", "r2n2.cases"}


def _importers(targets: set[str]) -> dict[str, set[str]]:
    return {m: set(deps) & targets for m, deps in GRAPH.items() if set(deps) & targets}


def test_no_import_cycle():
    assert find_cycle(GRAPH) is None, find_cycle(GRAPH)


def test_only_the_registry_names_a_case():
    assert _importers(CASES) == {"r2n2.registry": CASES}


def test_each_layer_imports_only_below_it():
    upward = {"core": (CORE, CASES | KINDS | DRIVERS | {"r2n2.registry"}),
              "kinds and cases": (KINDS | CASES, DRIVERS | {"r2n2.registry"}),
              "drivers": (DRIVERS, {"r2n2.registry"})}
    for layer, (members, above) in upward.items():
        bad = {m: sorted(GRAPH[m] & above) for m in members if GRAPH[m] & above}
        assert not bad, f"{layer} import upward: {bad}"
    assert not any(m.startswith("flows") for deps in (GRAPH[m] for m in modules() if m.startswith("r2n2"))
                   for m in deps), "r2n2/ imports flows/"


def test_the_checks_see_a_planted_cycle_and_a_function_level_import(tmp_path):
    for pkg in ("r2n2", "flows"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "r2n2" / "a.py").write_text("from . import b\n")
    (tmp_path / "r2n2" / "b.py").write_text("def f():\n    from .a import g\n")
    (tmp_path / "r2n2" / "c.py").write_text("import json\n")
    graph = import_graph(tmp_path)
    assert graph["r2n2.b"] == {"r2n2.a"}
    assert set(find_cycle(graph)) == {"r2n2.a", "r2n2.b"}
    assert find_cycle({k: v for k, v in graph.items() if k != "r2n2.b"}) is None
    assert closure(["r2n2.c"], tmp_path) == {"r2n2.c", "r2n2"}


def test_stage_code_deps_cover_every_module_the_case_and_the_stage_table_run():
    for case in REGISTRY.values():
        needed = closure([type(case).__module__, "r2n2.stages"])
        assert not (needed & (CASES - {type(case).__module__})), "a case's stages depend on another case"
        for st in STAGES:
            deps = code_deps(st, case)
            for m in needed:
                path = modules()[m].path.relative_to(ROOT).as_posix()
                assert any(path == d or path.startswith(d + "/") for d in deps), (case.name, st.name, path)
    # the bug this replaced: the panel's stages did not list a module the panel imports
    panel = code_deps(STAGES[0], REGISTRY["panel"])
    assert {"r2n2/cases/prices.py", "r2n2/cases/crosssection.py"} <= set(panel)
    assert "r2n2/cases/stocks.py" not in panel and "r2n2/cases/text.py" not in panel
    # nor does it rerun when the series kind's scoring changes: the price kinds share r2n2.cases.prices only
    assert "r2n2/cases/series.py" not in panel and "r2n2/cases/forecast.py" not in panel


def test_committed_dvc_yaml_lists_the_computed_code_deps():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for case in REGISTRY.values():
        for st in STAGES:
            listed = stages[f"{st.name}-{case.name}"]["deps"]
            assert set(code_deps(st, case)) <= set(listed), (st.name, case.name)


def test_source_paths_folds_a_complete_package_into_its_folder():
    assert source_paths([m for m in modules() if m.startswith("r2n2.models")]) == ["r2n2/models"]
    some = source_paths(["r2n2.models.core"])
    assert some == ["r2n2/models/core.py"]


@pytest.mark.slow
def test_dvc_status_reruns_the_panel_after_an_edit_to_a_module_it_imports(tmp_path):
    """A real DVC project with one stage whose deps are the panel's computed code deps: `dvc status` is clean
    after `dvc repro`, names the stage after an edit to the panel's kind module, and stays clean after an edit
    to a module only another case imports."""
    shutil.copytree(ROOT / "r2n2", tmp_path / "r2n2", ignore=shutil.ignore_patterns("__pycache__"))
    deps = code_deps(STAGES[0], REGISTRY["panel"])
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"probe-panel": {
        "cmd": "echo ran > out.txt", "deps": deps, "outs": ["out.txt"]}}}))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def run(*cmd):
        cmd = (sys.executable, "-m", "dvc", *cmd[1:]) if cmd[0] == "dvc" else cmd  # this venv's dvc, PATH or not
        return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, check=True).stdout

    run("git", "init", "-q")
    run("dvc", "init", "-q")
    run("dvc", "repro", "-q")
    assert "up to date" in run("dvc", "status")
    for other in ("text.py", "series.py"):  # the sentiment case's kind, the series kind: not run by the panel
        path = tmp_path / "r2n2" / "cases" / other
        path.write_text(path.read_text() + "\n# an edit\n")
        assert "up to date" in run("dvc", "status")
    kind = tmp_path / "r2n2" / "cases" / "prices.py"  # imported by the panel through its kind
    kind.write_text(kind.read_text() + "\n# an edit\n")
    out = run("dvc", "status")
    assert "probe-panel" in out and "r2n2/cases/prices.py" in out


def _functions(node, prefix=""):
    """(qualified name, lines) of every function and method under ``node``, nested ones included."""
    import ast

    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield f"{prefix}{child.name}", child.end_lineno - child.lineno + 1
            yield from _functions(child, f"{prefix}{child.name}.")
        elif isinstance(child, ast.ClassDef):
            yield from _functions(child, f"{prefix}{child.name}.")


def test_no_function_is_longer_than_80_lines():
    """A function that needs more than 80 lines (docstring and comments included) is split into named parts,
    as ``r2n2.train._train`` into optimiser, loss, resume, epoch and validation."""
    import ast

    long = {f"{path.relative_to(ROOT)}:{name}": n for folder in ("r2n2", "flows")
            for path in sorted((ROOT / folder).rglob("*.py"))
            for name, n in _functions(ast.parse(path.read_text())) if n > 80}
    assert not long, f"functions over 80 lines: {long}"


def test_the_size_check_sees_a_long_function():
    import ast

    body = "\n".join(f"    x{i} = {i}" for i in range(81))
    found = dict(_functions(ast.parse(f"class A:\n  def long(self):\n{body}\n    return 0\n")))
    assert found == {"A.long": 83}
