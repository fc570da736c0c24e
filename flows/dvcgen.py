"""dvc.yaml from the stage table: every stage of every case in params, with the params sections it reads, the
source files it runs and its data dependencies and outputs. `r2n2 dvc-yaml` writes it; `--check` (and a test)
fails when the committed file differs.

The Optuna search is opt-in: `r2n2 dvc-yaml --tune <case>...` adds ``tune@<case>`` to ``data/tuning/dvc.yaml``
(`dvc repro data/tuning/dvc.yaml:tune@<case>` runs it). A fresh clone has no such file, so `dvc status` after
`make run` lists only the pipeline's stages; a study that was asked for is tracked like any other stage. The
multi-seed evaluation is opt-in the same way (`--seeds <case>...`, data/seeds/dvc.yaml, ``seeds@<case>``); its
stages were run and their outputs and lock are committed."""

from __future__ import annotations

from pathlib import Path

import yaml

from r2n2.depgraph import closure, source_paths
from r2n2.registry import get_case
from r2n2.errors import ConfigError
from r2n2.io import write_text_atomic
from r2n2.paths import CasePaths
from r2n2.stages import STAGES, code_deps

HEADER = ("# Generated from the stage table (r2n2/stages.py) by `r2n2 dvc-yaml`; do not edit by hand.\n"
          "# Each stage lists the params it reads and the source files it runs, so an edit reruns it.\n")


def dvc_stages(params) -> dict:
    stages = {}
    for name in params.cases:
        case, paths = get_case(name), CasePaths(name)
        for st in STAGES:
            entry: dict = {"cmd": f"r2n2 {st.name} {name}",
                           "deps": code_deps(st, case) + [paths.rel(p) for p in st.deps(paths)],
                           "params": params.param_keys(name, st.params)}
            outs = [({paths.rel(p): {"persist": True}} if st.persist else paths.rel(p)) for p in st.outs(paths)]
            outs += [{paths.rel(p): {"cache": False}} for p in st.uncached(paths)]
            if outs:
                entry["outs"] = outs
            if st.metrics(paths):
                entry["metrics"] = [{paths.rel(p): {"cache": False}} for p in st.metrics(paths)]
            stages[f"{st.name}-{name}"] = entry
    return stages


def plots(case_names: list[str]) -> list:
    out = [{"learning curves": {"template": "linear", "x": "epoch", "y": {
        f"data/models/{c}/train_log.json": ["train_loss", "val_loss"] for c in case_names}}}]
    for c in case_names:
        plots_dir = CasePaths(c).reports / "plots"
        out += [{(plots_dir / f).as_posix(): {"template": t, "x": x, "y": y}} for f, t, x, y in get_case(c).plots]
    return out


def render(params) -> str:
    body = {"stages": dvc_stages(params), "plots": plots(list(params.cases))}
    return HEADER + yaml.safe_dump(body, sort_keys=False, width=120)


TUNE_FILE = Path("data") / "tuning" / "dvc.yaml"
SEEDS_FILE = Path("data") / "seeds" / "dvc.yaml"
OPT_IN_HEADER = ("# Written by `r2n2 dvc-yaml --{kind} <case>...`: stages that were asked for (a plain `dvc repro` never\n"
                 "# runs them). Run one by name:  dvc repro {path}:{kind}@<case>\n")


def _opt_in_stage(kind: str) -> dict:
    if kind == "tune":
        return {"wdir": "../..", "cmd": "r2n2 tune ${item}",
                "deps": [*source_paths(closure(["flows.tune"])), "data/windows/${item}"],
                "params": ["tune", "${item}.model", "${item}.train"],
                "outs": [{"data/tuning/${item}-best.yaml": {"cache": False}},
                         {"data/tuning/${item}.db": {"persist": True, "cache": False}}]}
    return {"wdir": "../..", "cmd": "r2n2 seeds ${item}",
            "deps": [*source_paths(closure(["flows.seeds"])), "data/windows/${item}"],
            "params": ["${item}.model", "${item}.train", "${item}.finetune", "${item}.evaluate"],
            "outs": [{"data/seeds/${item}/report.md": {"cache": False}},
                     {"data/seeds/${item}/metrics.json": {"cache": False}}],
            "metrics": [{"data/seeds/${item}/headline.json": {"cache": False}}]}


def opt_in_cases(path: Path, kind: str) -> list[str]:
    """The cases whose ``kind`` stage ``path`` holds (none when it does not exist)."""
    if not path.is_file():
        return []
    return list(yaml.safe_load(path.read_text())["stages"][kind]["foreach"])


def tune_cases(path: Path = TUNE_FILE) -> list[str]:
    return opt_in_cases(path, "tune")


def render_opt_in(kind: str, case_names: list[str], path: Path) -> str:
    body = {"stages": {kind: {"foreach": case_names, "do": _opt_in_stage(kind)}}}
    return OPT_IN_HEADER.format(kind=kind, path=path.as_posix()) + yaml.safe_dump(body, sort_keys=False, width=120)


def add_opt_in(params, kind: str, case_names: list[str], path: Path | None = None) -> str:
    """Add ``kind@<case>`` (kind: tune | seeds) for each case to its stage file, keeping those already there."""
    path = path or {"tune": TUNE_FILE, "seeds": SEEDS_FILE}[kind]
    unknown = sorted(set(case_names) - set(params.cases))
    if unknown:
        raise ConfigError(f"no case {', '.join(unknown)} in params.yaml; the cases are {', '.join(params.cases)}.")
    have = opt_in_cases(path, kind)
    names = have + [c for c in case_names if c not in have]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(render_opt_in(kind, names, path), path)
    return (f"wrote {path}: {kind}@{f', {kind}@'.join(names)}; run one with "
            f"`dvc repro {path.as_posix()}:{kind}@{case_names[0]}`")


def add_tune(params, case_names: list[str], path: Path = TUNE_FILE) -> str:
    return add_opt_in(params, "tune", case_names, path)


def check_or_write(params, *, check: bool, path: str | Path = "dvc.yaml") -> str:
    text = render(params)
    path = Path(path)
    if check:
        if not path.is_file() or path.read_text() != text:
            raise ConfigError(f"{path} is not what the stage table generates; run `r2n2 dvc-yaml` and commit it.")
        return f"{path} matches the stage table"
    write_text_atomic(text, path)
    return f"wrote {path} ({len(STAGES) * len(params.cases)} stages)"
