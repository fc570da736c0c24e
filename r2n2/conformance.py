"""``check_case(case)``: the conformance check of a use case (the idea of scikit-learn's ``check_estimator``).

On a small synthetic source that the case's kind writes (``UseCase.example``), with the case's own defaults
and the example's tiny settings, it runs every protocol method a deployment calls: the stage table (ingest ...
evaluate), typed window metadata that round-trips, ``predict`` on the source, the deployed monitor (and that
every monitor signal's reference has a spread, so no signal is dead), the promotion gate twice (the second has
nothing fresh to decide on), retraining with rolling cut dates, and the replay where the kind has one.
A driver: it is handed the case object and never names a case. Raises ``ConformanceError`` naming the step.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .cases.base import UseCase, WindowMeta, read_meta, window_meta_of
from .checkpoint import load_checkpoint
from .config import with_values
from .errors import R2N2Error
from .paths import CasePaths

__all__ = ["check_case", "ConformanceError"]


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


def check_case(case: UseCase, folder: str | Path | None = None, *, seed: int = 0, replay: bool = True) -> dict:
    """Run the case through everything a deployment calls, on its kind's synthetic example, in ``folder`` (a
    new temporary folder by default). Returns what was checked: ``{"steps": [...], "folder": ...}``."""
    from .ops.champion import promote_if_not_worse
    from .ops.monitoring import monitor_case, periods
    from .stages import STAGES, run_stage

    root = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix=f"r2n2-check-{case.name}-"))
    root.mkdir(parents=True, exist_ok=True)
    steps = []
    values = case.example(root, seed=seed)
    cfg = _config(case, values)
    paths = CasePaths(case.name, root)
    for st in STAGES:
        run_stage(st.name, case, cfg, root)
        for out in [*st.outs(paths), *st.metrics(paths)]:
            _step(case, f"stage {st.name}", out.exists(), f"{out} was not written")
        steps.append(f"stage {st.name}")

    meta = read_meta(paths.windows, case.name)
    _step(case, "window metadata", type(meta).kind != "base" and
          WindowMeta.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta, "it does not round-trip as its type")
    metrics = json.loads((paths.reports / "metrics.json").read_text())
    _step(case, "evaluate", {"model", "baselines", "comparisons"} <= set(metrics),
          f"metrics.json has {sorted(metrics)}, not model, baselines and comparisons")
    steps += ["window metadata", "evaluate"]

    model, ck = load_checkpoint(paths.model_dir / "model.pt")
    out = case.predict(model, window_meta_of(ck), ck, values["data.source"], cfg)
    _step(case, "predict", len(out) > 0 and bool(out.select_dtypes("number").notna().all().all()),
          "no predictions, or missing values in them")
    steps.append("predict")

    data = case.load(cfg, paths.windows)
    frame, signals = case.monitor_frame(cfg, data, model, ck)
    train, val, _ = periods(frame, window_meta_of(ck), signals.time)
    refs = {f: (val if f in signals.val_inputs else train)[f] for f in signals.inputs}
    refs["prediction"] = frame["pred"] if signals.prediction_history else val["pred"]
    refs["error"] = val["loss"]
    dead = [name for name, v in refs.items() if not np.nanstd(np.asarray(v, dtype=float)) > 0]
    _step(case, "monitor signals", not dead, f"signal(s) {', '.join(dead)} have a reference with no spread")
    result = monitor_case(case, cfg, root)
    _step(case, "monitor", {"alarm", "signals", "window", "cutoff", "verdict"} <= set(result))
    steps += ["monitor signals", "monitor"]

    first = promote_if_not_worse(case, cfg, root)
    _step(case, "promotion", first["window"] is not None and "benchmark" in first, first.get("reason", ""))
    if first["promoted"]:
        again = promote_if_not_worse(case, cfg, root)
        _step(case, "promotion again", again["promoted"] is False, "nothing fresh was decided on, yet it promoted")
    steps.append("promotion")

    rolling = _config(case, {**values, "window.cuts": "rolling"})
    ops = paths.operations()  # a deployment retrain: its own workspace, the research outputs untouched
    for name in ("ingest", "validate", "window", "train"):
        run_stage(name, case, rolling, root, paths=ops)
    _step(case, "rolling cuts", read_meta(ops.windows, case.name).cut_rule == "rolling"
          and read_meta(paths.windows, case.name).cut_rule != "rolling")
    decision = promote_if_not_worse(case, rolling, root)
    _step(case, "rolling promotion", decision["cut_rule"] == "rolling" and decision["challenger"].get("train_end")
          is not None, decision.get("reason", ""))
    steps.append("rolling retrain")

    if case.kind == "series":  # the replay scores every day from the full-history table: features must be causal
        import pandas as pd

        from .data.sources import read_parquet

        src = read_parquet(paths.validated, "validated example data")
        cut = src["date"].drop_duplicates().sort_values().iloc[-60]
        case.build_windows(rolling, src, root / "causal-full", lambda m: None)
        case.build_windows(rolling, src[src["date"] <= cut], root / "causal-prefix", lambda m: None)
        full, prefix = (case.load(rolling, root / d).table for d in ("causal-full", "causal-prefix"))
        cols = [c for c in case.load(rolling, root / "causal-full").meta.features if c in prefix]
        both = prefix.merge(full, on=["entity", "date"], suffixes=("", "_full"))
        both = both[both["date"] <= cut - pd.Timedelta(days=0)]
        moved = [c for c in cols if not np.allclose(both[c].to_numpy(float), both[f"{c}_full"].to_numpy(float),
                                                     equal_nan=True)]
        _step(case, "causal features", not moved, f"feature(s) {', '.join(moved)} of a day change when later days "
              "arrive (the replay would score with information from the future)")
        steps.append("causal features")

    if replay and case.kind in ("series", "text"):
        from .ops.loop import make_replay

        if case.kind == "series":
            dates = data.table["date"].drop_duplicates().sort_values()
            start, end, every, batch = str(dates.iloc[-120].date()), str(dates.iloc[-1].date()), 40, None
        else:
            n = int(data.table["time"].max()) + 1 if data.meta.time == "arrival" else None
            _step(case, "replay", n is not None, "the example's texts have no arrival order")
            start, end, every, batch = str(n - 300), str(n - 1), 1, 100
        rp = make_replay(case, cfg, root, start=start, end=end, retrain_every=every, monitor_every=1, batch=batch,
                         log=lambda m: None)
        for until in rp.period_ends():
            rp.run_until(until)
        summary = rp.write_report(ops.reports / "replay", seconds=0.0)
        _step(case, "replay", summary["look_ahead_rows"] == 0 and len(summary["retrains"]) >= 1,
              f"{summary['look_ahead_rows']} look-ahead rows, {len(summary['retrains'])} retrains")
        steps.append("replay")
    return {"case": case.name, "folder": str(root), "steps": steps}
