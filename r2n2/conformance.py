"""``check_case(case)``: the conformance check of a use case (the idea of scikit-learn's ``check_estimator``).

On a small synthetic source that the case's kind writes (``UseCase.example``), with the case's own defaults
and the example's tiny settings, it runs every protocol method a deployment calls: the stage table (ingest ...
evaluate), typed window metadata that round-trips, ``predict`` on the source, the deployed monitor (and that
every monitor signal's reference has a spread, so no signal is dead), the promotion gate twice (the second has
nothing fresh to decide on), retraining with rolling cut dates, and the replay where the kind has one.
A driver: it is handed the case object and never names a case. Raises ``ConformanceError`` naming the step.

The checks are named (``CHECKS``) and chosen by what a case can do (``checks_for``), as scikit-learn's
``parametrize_with_checks``: a test can run each (case, check) as its own test id on one prepared example.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .cases.base import UseCase, WindowMeta, read_meta, window_meta_of
from .checkpoint import load_checkpoint
from .config import with_values
from .data.sources import read_parquet
from .errors import R2N2Error
from .ops.champion import promote_if_not_worse
from .ops.loop import make_replay
from .ops.monitoring import monitor_case, periods
from .paths import CasePaths
from .stages import STAGES, run_stage

__all__ = ["CHECKS", "ConformanceError", "Example", "check_case", "checks_for", "prepare", "run_check"]


class ConformanceError(R2N2Error):
    """A use case broke the protocol: the message names the case and the step."""


def _step(case: UseCase, what: str, ok: bool, detail: str = "") -> None:
    if not ok:
        raise ConformanceError(f"{case.name} ({type(case).__name__}) fails conformance at {what}"
                               + (f": {detail}" if detail else "."))


def _config(case: UseCase, values: dict[str, Any]):
    cfg = with_values(case.config_cls(), values)
    case.check_config(cfg, case.name)
    return cfg


@dataclass
class Example:
    """A case prepared on its kind's synthetic example: what every named check reads (``prepare``)."""
    case: UseCase
    cfg: Any
    values: dict
    root: Path
    paths: CasePaths
    steps: list = field(default_factory=list)

    @cached_property
    def rolling(self) -> Any:
        """The example's config with rolling cut dates: what a deployment retrain and the replay use."""
        return _config(self.case, {**self.values, "window.cuts": "rolling"})

    @cached_property
    def trained(self) -> tuple:
        """(model, checkpoint metadata) of the research model the stages trained."""
        return load_checkpoint(self.paths.model_dir / "model.pt")

    def step(self, what: str, ok: bool, detail: str = "") -> None:
        _step(self.case, what, ok, detail)
        self.steps.append(what)


def prepare(case: UseCase, folder: str | Path | None = None, *, seed: int = 0) -> Example:
    """Write the kind's example under ``folder`` (a new temporary folder by default) and run the stage table on
    it, checking that every stage writes its outputs (the first named check, ``stages``)."""
    root = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix=f"r2n2-check-{case.name}-"))
    root.mkdir(parents=True, exist_ok=True)
    values = case.example(root, seed=seed)
    ex = Example(case, _config(case, values), values, root, CasePaths(case.name, root))
    for st in STAGES:
        run_stage(st.name, case, ex.cfg, root)
        for out in [*st.outs(ex.paths), *st.metrics(ex.paths)]:
            _step(case, f"stage {st.name}", out.exists(), f"{out} was not written")
        ex.steps.append(f"stage {st.name}")
    return ex


def _window_metadata(ex: Example) -> None:
    meta = read_meta(ex.paths.windows, ex.case.name)
    ex.step("window metadata", type(meta).kind != "base" and
            WindowMeta.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta, "it does not round-trip as its type")


def _evaluate(ex: Example) -> None:
    metrics = json.loads((ex.paths.reports / "metrics.json").read_text())
    ex.step("evaluate", {"model", "baselines", "comparisons"} <= set(metrics),
            f"metrics.json has {sorted(metrics)}, not model, baselines and comparisons")


def _predict(ex: Example) -> None:
    model, ck = ex.trained
    out = ex.case.predict(model, window_meta_of(ck), ck, ex.values["data.source"], ex.cfg)
    ex.step("predict", len(out) > 0 and bool(out.select_dtypes("number").notna().all().all()),
            "no predictions, or missing values in them")


def _monitor_signals(ex: Example) -> None:
    model, ck = ex.trained
    data = ex.case.load(ex.cfg, ex.paths.windows)
    frame, signals = ex.case.monitor_frame(ex.cfg, data, model, ck)
    train, val, _ = periods(frame, window_meta_of(ck), signals.time)
    refs = {f: (val if f in signals.val_inputs else train)[f] for f in signals.inputs}
    refs["prediction"] = frame["pred"] if signals.prediction_history else val["pred"]
    refs["error"] = val["loss"]
    dead = [name for name, v in refs.items() if not np.nanstd(np.asarray(v, dtype=float)) > 0]
    ex.step("monitor signals", not dead, f"signal(s) {', '.join(dead)} have a reference with no spread")


def _monitor(ex: Example) -> None:
    result = monitor_case(ex.case, ex.cfg, ex.root)
    ex.step("monitor", {"alarm", "signals", "window", "cutoff", "verdict"} <= set(result))


def _promotion(ex: Example) -> None:
    first = promote_if_not_worse(ex.case, ex.cfg, ex.root)
    _step(ex.case, "promotion", first["window"] is not None and "benchmark" in first, first.get("reason", ""))
    if first["promoted"]:
        again = promote_if_not_worse(ex.case, ex.cfg, ex.root)
        _step(ex.case, "promotion again", again["promoted"] is False, "nothing fresh was decided on, yet it promoted")
    ex.steps.append("promotion")


def _rolling_retrain(ex: Example) -> None:
    rolling = ex.rolling
    ops = ex.paths.operations()  # a deployment retrain: its own workspace, the research outputs untouched
    for name in ("ingest", "validate", "window", "train"):
        run_stage(name, ex.case, rolling, ex.root, paths=ops)
    _step(ex.case, "rolling cuts", read_meta(ops.windows, ex.case.name).cut_rule == "rolling"
          and read_meta(ex.paths.windows, ex.case.name).cut_rule != "rolling")
    decision = promote_if_not_worse(ex.case, rolling, ex.root)
    ex.step("rolling retrain", decision["cut_rule"] == "rolling" and decision["challenger"].get("train_end")
            is not None, decision.get("reason", ""))


def _causal_features(ex: Example) -> None:
    """The replay scores every day from the full-history table: a day's features must not change when later
    days arrive."""
    case, root = ex.case, ex.root
    rolling = ex.rolling
    src = read_parquet(ex.paths.validated, "validated example data")
    cut = src["date"].drop_duplicates().sort_values().iloc[-60]
    case.build_windows(rolling, src, root / "causal-full", lambda m: None)
    case.build_windows(rolling, src[src["date"] <= cut], root / "causal-prefix", lambda m: None)
    full, prefix = (case.load(rolling, root / d).table for d in ("causal-full", "causal-prefix"))
    cols = [c for c in case.load(rolling, root / "causal-full").meta.features if c in prefix]
    both = prefix.merge(full, on=["entity", "date"], suffixes=("", "_full"))
    both = both[both["date"] <= cut]
    moved = [c for c in cols if not np.allclose(both[c].to_numpy(float), both[f"{c}_full"].to_numpy(float),
                                                 equal_nan=True)]
    ex.step("causal features", not moved, f"feature(s) {', '.join(moved)} of a day change when later days "
            "arrive (the replay would score with information from the future)")


def _replay(ex: Example) -> None:
    data = ex.case.load(ex.cfg, ex.paths.windows)
    if ex.case.kind in ("series", "crosssection"):  # trading dates
        dates = data.table["date"].drop_duplicates().sort_values()
        start, end, every, batch = str(dates.iloc[-120].date()), str(dates.iloc[-1].date()), 40, None
    else:
        n = int(data.table["time"].max()) + 1 if data.meta.time == "arrival" else None
        _step(ex.case, "replay", n is not None, "the example's texts have no arrival order")
        start, end, every, batch = str(n - 300), str(n - 1), 1, 100
    rp = make_replay(ex.case, ex.cfg, ex.root, start=start, end=end, retrain_every=every, monitor_every=1,
                     batch=batch, log=lambda m: None)
    for until in rp.period_ends():
        rp.run_until(until)
    summary = rp.write_report(ex.paths.operations().reports / "replay", seconds=0.0)
    ex.step("replay", summary["look_ahead_rows"] == 0 and len(summary["retrains"]) >= 1,
            f"{summary['look_ahead_rows']} look-ahead rows, {len(summary['retrains'])} retrains")


# The named checks after ``prepare`` (which runs the stages), in the order they must run (the promotion needs
# the trained model, the rolling retrain a champion, the replay the operations workspace): (name, whether the
# case can be asked it, the check).
CHECKS = (
    ("window_metadata", lambda case: True, _window_metadata),
    ("evaluate", lambda case: True, _evaluate),
    ("predict", lambda case: True, _predict),
    ("monitor_signals", lambda case: True, _monitor_signals),
    ("monitor", lambda case: True, _monitor),
    ("promotion", lambda case: True, _promotion),
    ("rolling_retrain", lambda case: True, _rolling_retrain),
    ("causal_features", lambda case: case.kind == "series", _causal_features),
    ("replay", lambda case: case.kind in ("series", "crosssection", "text"), _replay),
)


def checks_for(case: UseCase, *, replay: bool = True) -> list[str]:
    """The names of the checks this case is asked, in order (``parametrize`` a test with them)."""
    return [name for name, applies, _ in CHECKS if applies(case) and (replay or name != "replay")]


def run_check(name: str, ex: Example) -> None:
    """One named check on a prepared example; raises ``ConformanceError`` naming the case and the step."""
    dict((n, fn) for n, _, fn in CHECKS)[name](ex)


def check_case(case: UseCase, folder: str | Path | None = None, *, seed: int = 0, replay: bool = True) -> dict:
    """Run the case through everything a deployment calls, on its kind's synthetic example, in ``folder`` (a
    new temporary folder by default): ``prepare``, then every check of ``checks_for``. Returns what was checked:
    ``{"case", "folder", "steps": [...]}``."""
    ex = prepare(case, folder, seed=seed)
    for name in checks_for(case, replay=replay):
        run_check(name, ex)
    return {"case": case.name, "folder": str(ex.root), "steps": ex.steps}
