"""The text kind's steps of the one replay loop (``r2n2.ops.replay.ReplaySchedule``): a simulated arrival of
labelled texts that proves the deployed loop (monitor -> retrain -> promote) for a classifier.

A step is one arrival batch: the next ``batch`` texts of the pretraining domain (texts the transfer target's
pattern does not match) in time order, extended over texts that share its last arrival index (texts with a time
column: its last day), so the data known at a step's close is exactly what ingest keeps with ``data.until`` (an
arrival index, or a day). ``start`` and ``end`` are in the units of the text time column: arrival indices for the
built-in corpus (whose arrival order is simulated: seeded, independent of the label) or for a file without a
time column; ISO dates for a file with one. At each batch, in this order:

1. the deployed champion predicts the batch: truly out of sample, it trained only on texts of earlier batches
   (``model_train_end``, the last time it knew, is before every row's ``date``);
2. the batch's labels arrive; every ``monitor_every`` batches the calibrated monitor checks the champion's newest
   post-cut-off texts with the deployed monitor's signals (``r2n2.cases.text.text_frame``: text length, share of
   unseen words, predicted classes, error rate), skipping texts whose near-duplicate group it saw;
3. by the retrain policy (default: every ``retrain_every`` batches, or right after an alarm), a challenger is
   trained by the case's window and train stages with rolling cuts on every text known so far (the newest
   ``window.holdout_texts`` are its promotion slice, the ``window.val_texts`` before them early stopping; its own
   BPE tokenizer), or warm-started (the champion's tokenizer and weights, ``warm_epochs`` epochs);
4. the deployed gate (``case.promotion_scores`` + ``decide_promotion(kind="classifier")``, as `r2n2 retrain`):
   champion, challenger and the majority class on the challenger's holdout texts after both cut-offs.

Beside the champion the timeline records the first model never retrained, "always retrain" (every challenger
deployed, no test) and the majority class of the first training period.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..cases.base import CaseData, window_meta_of
from ..cases.classify import predict_texts
from ..cases.text import TextData, encode_texts, label_ids, source_domain, text_frame, text_signals, text_vocab
from ..data.sources import read_parquet
from ..data.textkey import near_duplicate_keys
from ..errors import ConfigError, DataError
from ..evaluate.baselines import majority_baseline
from .monitoring import check_window, fit_frame_monitor, signal_config
from .replay import Deployed, ReplaySchedule, promotion_gate_scores
from .reports import write_text_replay_report
from .sequential import _MAX_CELLS

__all__ = ["TextReplay", "arrival_batches", "DEFAULT_BATCH"]

DEFAULT_BATCH = 500   # texts per arrival batch: ~1.5 % of the built-in corpus, enough for a stable error rate
_MIN_KNOWN = 100      # texts before the start that a first model needs at the least


def arrival_batches(times: np.ndarray, size: int) -> list[tuple[int, int]]:
    """[lo, hi) positions of consecutive batches of ``size`` texts over sorted ``times``; a batch grows over the
    texts that share its last time, so a model trained through one batch never shares a time with the next."""
    out, lo, n = [], 0, len(times)
    while lo < n:
        hi = int(np.searchsorted(times, times[min(lo + size, n) - 1], side="right"))
        out.append((lo, hi))
        lo = hi
    return out


@dataclass
class TextDeployed(Deployed):
    n_known: int = 0                        # it was trained (and validated) on stream positions [0, n_known)
    vocab: set | None = None                # words of its training texts (the new-word signal's reference)
    train: np.ndarray | None = None         # positions of its training texts
    val: np.ndarray | None = None           # positions of its validation texts (near-duplicates of training left out)
    holdout: np.ndarray | None = None       # positions of its holdout texts (the promotion slice: never fitted on)
    data: CaseData | None = None            # its windows, until its promotion is decided


@dataclass
class TextReplay(ReplaySchedule):
    """The simulated arrival of one text case; ``run_until(until)`` advances it (one Prefect sub-run each)."""

    batch: int = DEFAULT_BATCH
    reference_windows: int = 16             # the monitor's window is at most 1/16 of the validation texts (below)
    cusum_batches: float = 100.0            # the chart's in-control average run length, in arrival batches

    # the sequential chart of the deployed process: its 0/1 error minus the majority class's, text by text
    CHARTS = {"differential": ("live error differential vs the majority class",
                               lambda pred, bench, y: (pred != y).astype(float) - (bench != y).astype(float))}
    unit = "texts"

    def __post_init__(self):
        for flag, v in (("--batch", self.batch), ("--retrain-every", self.retrain_every),
                        ("--monitor-every", self.monitor_every)):
            if int(v) < 1:
                raise ConfigError(f"{flag} must be >= 1, got {v}.")
        self._begin()
        self.source = read_parquet(self.paths.validated, f"validated {self.case_name} data")  # both domains
        df = self.source[source_domain(self.source["text"], self.cfg.window.finetune_pattern)]
        df = df.sort_values("time", kind="stable").reset_index(drop=True)
        self.dates = pd.api.types.is_datetime64_any_dtype(df["time"])
        df["label_id"] = label_ids(df["label"])
        df["key"] = near_duplicate_keys(df["text"])
        self.stream = df
        self.times = df["time"].to_numpy()
        # a step's data is known through a whole arrival index, or a whole day (what data.until can say)
        self.steps_at = self.times.astype("datetime64[D]") if self.dates else self.times
        # first position of each text's near-duplicate group: a text is new to a model that knew [0, n) iff >= n
        self.first_seen = pd.Series(np.arange(len(df))).groupby(df["key"].to_numpy()).transform("min").to_numpy()
        lo, hi = self._parse(self.start, "--start"), self._parse(self.end, "--end")
        p0, p1 = int(np.searchsorted(self.steps_at, lo, "left")), int(np.searchsorted(self.steps_at, hi, "right"))
        if p1 <= p0:
            raise DataError(f"no {self.case_name} texts arrive between --start {self.start} and --end {self.end} "
                            f"(the texts span {self._json(self.times[0])} .. {self._json(self.times[-1])}).")
        if p0 < _MIN_KNOWN:
            raise DataError(f"only {p0} {self.case_name} texts arrive before --start {self.start}; a first model "
                            f"needs at least {_MIN_KNOWN}. Start the replay later.")
        self.batches = [(p0 + a, p0 + b) for a, b in arrival_batches(self.steps_at[p0:p1], self.batch)]
        self.n_steps = len(self.batches)
        self.signals = text_signals(len(self.case.labels))
        self.mcfg = signal_config(self.cfg.monitor, self.signals)
        self.log(f"replay {self.case_name}: {p1 - p0} texts in {len(self.batches)} batches from "
                 f"{self._json(self.times[p0])} to {self._json(self.times[p1 - 1])}; training the first model on "
                 f"the {p0} texts before")
        self._prefit(self.steps_at[p0 - 1])
        self.champion = self._train(self.steps_at[p0 - 1], None)
        self.never = self.latest = self.champion
        self.majority = int(majority_baseline(df["label_id"].to_numpy()[self.champion.train], 1)[0])

    # -- time units -------------------------------------------------------------------------------
    def _parse(self, value, flag: str = "until"):
        """A bound in the units of the time column: an ISO date (a day), or an arrival index."""
        try:
            return np.datetime64(pd.Timestamp(str(value)).normalize(), "D") if self.dates else int(str(value))
        except ValueError:
            unit = ("an ISO date such as 2015-06-30 (the texts' time column holds dates)" if self.dates else
                    "an arrival index such as 20000 (the texts have no time column; the built-in corpus's arrival "
                    "order is simulated)")
            raise ConfigError(f"{flag} for the {self.case_name} replay must be {unit}, got {str(value)[:80]!r}.") \
                from None

    def _show(self, t) -> str:
        return str(pd.Timestamp(t).date()) if self.dates else str(int(t))

    def _json(self, v):
        return pd.Timestamp(v).isoformat() if self.dates else int(v)

    def step_time(self, i: int):
        return self.steps_at[self.batches[i][1] - 1]

    def _known_source(self, t) -> pd.DataFrame:
        """= ingest with data.until = t: every text (both domains) through arrival index t, or through day t."""
        time = self.source["time"]
        return self.source[time < pd.Timestamp(t) + pd.Timedelta(days=1)] if self.dates else self.source[time <= int(t)]

    # -- models -----------------------------------------------------------------------------------
    def _deployed(self, model, ck: dict, t, data) -> TextDeployed:
        """The model the stages trained on the texts known at ``t``: its training and validation texts are the
        source-domain rows of its windows (in stream order: both are the known texts sorted stably by time)."""
        src = data.table[data.table["domain"] == "source"]
        n_known = len(src)
        if not (n_known <= len(self.stream) and (src["text"].to_numpy() == self.stream["text"].to_numpy()[:n_known]).all()):
            raise DataError(f"the {self.case_name} windows at {self._show(t)} do not follow the replay's stream; "
                            "rerun the validate stage.")
        split = src["split"].to_numpy()
        train, val, holdout = (np.flatnonzero(split == s) for s in ("train", "val", "test"))
        m = TextDeployed(model=model, ck=ck, meta=window_meta_of(ck), train_end=t, preds={}, n_known=n_known,
                         vocab=text_vocab(self.stream["text"].iloc[train]), train=train, val=val, holdout=holdout,
                         data=data)
        self._predict(m, val)  # the monitor's reference
        return m

    def _warm(self, data, warm_from: Deployed) -> tuple:
        """The new windows' texts encoded with the champion's tokenizer (its weights index that vocabulary)."""
        from tokenizers import Tokenizer

        tok_json = warm_from.ck["tokenizer"]
        tok = Tokenizer.from_str(tok_json)
        table = data.table.copy()
        table["ids"] = encode_texts(tok, table["text"], self.cfg.window.max_tokens)
        meta = replace(data.meta, vocab_size=tok.get_vocab_size())
        warm = TextData.in_memory(self.case, data.cfg, meta, table)
        return warm, {**CaseData.checkpoint_metadata(warm), "tokenizer": tok_json}

    def _predict(self, m: TextDeployed, positions) -> np.ndarray:
        """Class ids of ``m`` on stream positions (each text predicted once per model, then cached)."""
        positions = np.asarray(positions, dtype=np.int64)
        missing = [int(p) for p in positions if int(p) not in m.preds]
        if missing:
            t0 = _time.perf_counter()
            probs = predict_texts(m.model, m.ck["tokenizer"], m.meta, self.stream["text"].iloc[missing].tolist())
            m.preds.update(zip(missing, probs[[f"prob_{l}" for l in m.meta.labels]].to_numpy().argmax(1).tolist()))
            self.seconds["predict"] += _time.perf_counter() - t0
        return np.asarray([m.preds[int(p)] for p in positions], dtype=np.int64)

    def _gate_scores(self, challenger: TextDeployed, champion: TextDeployed, window: dict) -> dict:
        return promotion_gate_scores(self, challenger, champion, window)

    # -- monitoring -------------------------------------------------------------------------------
    def _monitor(self, i: int) -> dict:
        """Check the champion's newest post-cut-off texts known at the close of step ``i`` (labels arrived)."""
        t0 = _time.perf_counter()
        hi = self.batches[i][1]
        c = self.champion
        if c.monitor is None:
            # reference: inputs of its training texts; predictions, errors, new words of its validation texts
            ref = np.concatenate([c.train, c.val])
            pred = np.concatenate([np.full(len(c.train), -1), self._predict(c, c.val)])  # training rows: inputs only
            frame = text_frame(self.stream.iloc[ref], pred, c.vocab)
            # Why 1/16: the error and prediction thresholds come from windows of the validation texts. Calm
            # synthetic streams (seeds 3-10, 128 checks, nominal family rate 5 %): 4 windows there alarmed 11.7 %
            # of checks before thresholds were floored at the independent-draws quantile, 5.5 % after; 16 windows
            # 4.7 % before, 1.6 % after.
            mc = replace(self.mcfg, window=min(self.mcfg.window,
                                               max(self.mcfg.min_samples, len(c.val) // self.reference_windows)))
            try:
                sig = self.signals
                c.monitor, c.window = fit_frame_monitor(frame, c.meta, mc, inputs=list(sig.inputs), time=sig.time,
                                                        kinds=dict(sig.kinds), n_classes=dict(sig.n_classes),
                                                        bench=sig.bench, val_inputs=tuple(sig.val_inputs))
            except DataError as exc:  # too little history to calibrate: say so, never alarm on a guess
                c.monitor, c.note = False, f"no verdict: too little history to calibrate the monitor ({exc})"
            # the chart's reference: the holdout texts, which neither trained nor early-stopped the model (its
            # validation texts did, and their error is optimistic: measured on the calm streams of
            # tests/test_textreplay.py, 2 false chart alarms in 32 checks with them as the reference)
            labels, ref = np.asarray(self.case.labels, dtype=object), c.holdout
            arl = self.cusum_batches * self.batch  # texts
            c.cusum = self._calibrate(labels[self._predict(c, ref)], np.full(len(ref), labels[self.majority]),
                                      labels[self.stream["label_id"].to_numpy()[ref]], arl0=arl,
                                      n_boot=int(max(50, min(200, _MAX_CELLS // (3 * arl)))))
        if c.monitor is False:
            out = {"alarm": False, "signals": {}, "verdict": c.note}
        else:
            post = np.arange(c.n_known, hi)
            post = post[self.first_seen[post] >= c.n_known][-c.window:]  # new to the champion, newest first
            frame = text_frame(self.stream.iloc[post], self._predict(c, post), c.vocab)
            out = check_window(c.monitor, frame, c.meta, self.mcfg, inputs=list(self.signals.inputs),
                               time=self.signals.time, bench=self.signals.bench)
        out["cusum"] = self._check_cusum(c)  # across promotions: every check can alarm
        if out["cusum"]["alarm"]:
            out["verdict"] = (out["verdict"] + "; " if out["alarm"] else "ALARM: ") + out["cusum"]["reason"]
            out["alarm"] = True
        self.seconds["monitor"] += _time.perf_counter() - t0
        return out

    def _chart_arrays(self, recs: list) -> tuple:
        f = pd.concat(recs, ignore_index=True)
        return f["prediction"].to_numpy(), f["majority"].to_numpy(), f["actual"].to_numpy()

    # -- the calendar -----------------------------------------------------------------------------
    def _record(self, i: int) -> pd.DataFrame:
        lo, hi = self.batches[i]
        pos = np.arange(lo, hi)
        labels = np.asarray(self.case.labels, dtype=object)
        c = self.champion
        return pd.DataFrame({"date": self.times[lo:hi], "batch": i,
                             "actual": labels[self.stream["label_id"].to_numpy()[lo:hi]],
                             "prediction": labels[self._predict(c, pos)], "model_train_end": c.train_end,
                             "never_retrained": labels[self._predict(self.never, pos)],
                             "always_retrained": labels[self._predict(self.latest, pos)],
                             "majority": labels[self.majority], "alarm": False, "retrained": False,
                             "promoted": False, "monitor_p_min": np.nan, "cusum": np.nan, "cusum_alarm": False})

    def timeline(self) -> pd.DataFrame:
        """One row per replayed text: its time (``date``), batch, label, every line's prediction, the champion's
        ``model_train_end`` and the batch's ``alarm`` / ``retrained`` / ``promoted`` flags (on every row of it)."""
        return pd.concat(self.rows, ignore_index=True) if self.rows else pd.DataFrame()

    def write_report(self, out_dir: Path, *, seconds: float) -> dict:
        """timeline.parquet, summary.json, replay.md and live_error.png under ``out_dir``."""
        return write_text_replay_report(self, Path(out_dir), seconds=seconds)
