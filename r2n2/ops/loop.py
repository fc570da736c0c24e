"""The replay of a case (``r2n2 replay``): the one loop of ``r2n2.ops.replay.ReplaySchedule``, with the steps of
the case's kind: one trading day (``SeriesReplay``), one trading date of a cross-section (``r2n2.ops.panelreplay.
PanelReplay``) or one arrival batch of texts (``r2n2.ops.textreplay.TextReplay``). A driver: it is handed the case
object and never names a case."""

from __future__ import annotations

from pathlib import Path

from ..cases.base import Log, UseCase
from .panelreplay import PanelReplay
from .replay import SeriesReplay
from .textreplay import DEFAULT_BATCH, TextReplay

__all__ = ["make_replay"]


def make_replay(case: UseCase, cfg, root: Path, *, start: str, end: str, retrain_every: int, monitor_every: int,
                warm_start: bool = False, batch: int | None = None, workers: int = 1, dask_address: str | None = None,
                threads: int | None = None, retrain_policy: object = "both", log: Log = print):
    """The case's simulated calendar over its real history: an object with ``period_ends() -> list[str]``,
    ``run_until(until: str) -> dict`` (one Prefect sub-run each) and ``write_report(out_dir, *, seconds) -> dict``
    (the summary, with a one-line ``headline``). ``start``, ``end``: in the units of the case's time axis;
    ``retrain_every``, ``monitor_every``: steps; ``batch``: texts per step (text cases; None: the default);
    ``retrain_policy``: "both" (every ``retrain_every`` steps and after an alarm), "schedule", "alarm" or a
    callable ``(step, time, alarm) -> bool`` (``ReplaySchedule.retrain_policy``)."""
    case.replay_check(batch=batch)  # refuses what this case cannot run (e.g. --batch for a price case)
    common = dict(retrain_every=retrain_every, monitor_every=monitor_every, warm_start=warm_start, workers=workers,
                  dask_address=dask_address, threads=threads, retrain_policy=retrain_policy, log=log)
    if case.kind == "series":
        return SeriesReplay(case, cfg, Path(root), str(start), str(end), **common)
    if case.kind == "crosssection":
        return PanelReplay(case, cfg, Path(root), str(start), str(end), **common)
    if case.kind == "text":
        return TextReplay(case, cfg, Path(root), str(start), str(end), batch=DEFAULT_BATCH if batch is None else batch,
                          **common)
    raise NotImplementedError(f"{type(case).__name__}.replay_check passes but its kind {case.kind!r} has no replay")
