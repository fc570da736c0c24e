"""One conformance harness for every registered use case: each runs through every stage of the table on tiny
data, its typed window metadata round-trips, its checkpoints predict, monitor and promote; and the generic
modules hold no case branches."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from r2n2.registry import REGISTRY, get_case
from r2n2.cases.base import WindowMeta, read_meta
from r2n2.registry import load_params
from r2n2.ops.champion import promote_if_not_worse
from r2n2.ops.monitoring import monitor_case
from r2n2.paths import CasePaths
from r2n2.registry import run_stage
from r2n2.stages import STAGES

from .conftest import ROOT, write_tiny_project

GENERIC = ["r2n2/stages.py", "r2n2/config.py", "r2n2/io.py", "r2n2/paths.py", "r2n2/train.py", "r2n2/checkpoint.py",
           *map(str, Path(ROOT).glob("r2n2/ops/*.py")), *map(str, Path(ROOT).glob("r2n2/data/*.py")),
           *map(str, Path(ROOT).glob("r2n2/evaluate/*.py")), *map(str, Path(ROOT).glob("flows/*.py"))]


def test_generic_modules_hold_no_case_branches():
    names = "|".join(REGISTRY)
    branch = re.compile(rf"""(==|!=|\bin)\s*[\(\[]?\s*["']({names})["']""")
    for f in GENERIC:
        text = (ROOT / f).read_text() if not Path(f).is_absolute() else Path(f).read_text()
        assert not branch.search(text), f"{f}: {branch.search(text).group(0)}"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cases")
    write_tiny_project(root)
    params = load_params(root / "params.yaml")
    for name in REGISTRY:
        cfg = params.case(name)
        cfg.data.source = str(root / cfg.data.source)
        for st in STAGES:
            run_stage(st.name, name, cfg, root)
    return root, params


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_case_runs_every_stage(tiny, name):
    root, params = tiny
    paths = CasePaths(name, root)
    for st in STAGES:
        for out in [*st.outs(paths), *st.metrics(paths)]:
            assert out.exists(), f"{name} {st.name}: {out} missing"
    meta = read_meta(paths.windows, name)
    assert WindowMeta.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta  # typed metadata round-trips
    assert type(meta).kind != "base"
    c = meta.cuts
    assert c["start"] < c["val_start"] < c["test_start"] <= c["end"] or meta.time == "arrival"
    m = json.loads((paths.reports / "metrics.json").read_text())
    assert {"model", "baselines", "comparisons", "power"} <= set(m)
    for c in m["comparisons"]:  # every test states what it could have detected, and on which side
        assert c["sided"] in ("two-sided", "one-sided") and "mde" in c, (name, c["test"])
    assert (paths.reports / "report.md").read_text().count("|") > 10


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_case_predicts_monitors_and_promotes(tiny, name, monkeypatch):
    root, params = tiny
    monkeypatch.chdir(root)
    cfg = params.case(name)
    from r2n2.checkpoint import load_checkpoint

    model, ck = load_checkpoint(CasePaths(name, root).model_dir / "model.pt")
    meta = WindowMeta.from_dict(json.loads(ck["window_meta"]))
    out = get_case(name).predict(model, meta, ck, cfg.data.source, cfg)
    assert len(out) > 0 and out.select_dtypes("number").notna().all().all()
    result = monitor_case(get_case(name), cfg, root)
    assert set(result) >= {"alarm", "signals", "window", "cutoff", "verdict"}
    assert result["window"]["n"] == 0 or str(result["window"]["start"]) >= str(result["cutoff"])
    decision = promote_if_not_worse(get_case(name), cfg, root)
    # no champion yet: promoted unless the tiny model is shown worse than the naive benchmark
    assert decision["benchmark"]["id"] and decision["promoted"] is decision["benchmark"]["passed"]
    assert str(decision["window"]["end"]) < str(decision["test_split_start"])
    assert (CasePaths(name, root).champion_dir / "model.pt").is_file() is decision["promoted"]
    if decision["promoted"]:
        assert promote_if_not_worse(get_case(name), cfg, root)["promoted"] is False  # nothing fresh to compare on
    else:
        assert "worse" in decision["reason"] and "benchmark" in decision["reason"]


def test_adding_a_case_is_one_module_and_one_registration():
    """The registry is the only generic place that names the cases."""
    registry = (ROOT / "r2n2/registry.py").read_text()
    for name, case in REGISTRY.items():
        module = type(case).__module__.rsplit(".", 1)[-1]
        assert f"{type(case).__name__}()" in registry and (ROOT / f"r2n2/cases/{module}.py").is_file()
    assert pd.Series(list(REGISTRY)).is_unique


def _case_checks() -> list:
    from r2n2.conformance import checks_for

    return [pytest.param(name, check, id=f"{name}-{check}") for name in REGISTRY
            for check in ("stages", *checks_for(get_case(name)))]


@pytest.fixture(scope="module")
def prepared() -> dict:
    """Case name -> its example prepared by the (case, "stages") test, which runs first for that case."""
    return {}


@pytest.mark.slow
@pytest.mark.parametrize("name,check", _case_checks())
def test_conformance(name, check, prepared, tmp_path_factory):
    """The public conformance checks, one test id per (case, check) as scikit-learn's parametrize_with_checks:
    every protocol method on the kind's own synthetic example, prepared once per case."""
    from r2n2.conformance import prepare, run_check

    if check == "stages":
        prepared[name] = prepare(get_case(name), tmp_path_factory.mktemp(name))
        assert {f"stage {st}" for st in ("ingest", "evaluate")} <= set(prepared[name].steps)
        return
    if name not in prepared:
        pytest.fail(f"{name}: its stages did not run (see {name}-stages), so {check} cannot be checked")
    run_check(check, prepared[name])


def test_the_checks_a_case_is_asked_follow_its_kind():
    from r2n2.conformance import checks_for

    for name, case in REGISTRY.items():
        checks = checks_for(case)
        assert {"predict", "monitor_signals", "promotion", "rolling_retrain"} <= set(checks)
        assert ("replay" in checks) is (case.kind in ("series", "crosssection", "text"))
        assert ("causal_features" in checks) is (case.kind == "series")
        assert "replay" not in checks_for(case, replay=False)


def test_check_case_names_the_step_a_broken_case_fails(tmp_path):
    from r2n2.cases.stocks import StocksCase
    from r2n2.conformance import ConformanceError, check_case

    class Silent(StocksCase):  # a monitor signal that never moves: the check must refuse it
        def monitor_frame(self, cfg, data, model, ck):
            frame, signals = super().monitor_frame(cfg, data, model, ck)
            return frame.assign(ret_close=0.0), signals

        def evaluate(self, cfg, data, models, paths, log):
            return super().evaluate(cfg, data, models, paths, log)

    with pytest.raises(ConformanceError, match=r"stocks \(Silent\) fails conformance at monitor signals: signal\(s\) "
                                               r"ret_close have a reference with no spread"):
        check_case(Silent(), tmp_path, replay=False)


@pytest.mark.slow
def test_check_case_refuses_a_feature_that_sees_the_future(tmp_path):
    from r2n2.cases.stocks import StocksCase
    from r2n2.conformance import ConformanceError, check_case
    from r2n2.io import write_parquet_atomic

    class Leaky(StocksCase):  # centres a feature on the whole sample: a day's value moves when later days arrive
        def build_windows(self, cfg, df, out_dir, log):
            meta = super().build_windows(cfg, df, out_dir, log)
            t = pd.read_parquet(out_dir / "features.parquet")
            t["ret_close"] = t["ret_close"] - t["ret_close"].mean()
            write_parquet_atomic(t, out_dir / "features.parquet")
            return meta

    with pytest.raises(ConformanceError, match=r"fails conformance at causal features: feature\(s\) ret_close of a day"):
        check_case(Leaky(), tmp_path, replay=False)
