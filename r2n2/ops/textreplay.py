"""The text replay: a simulated calendar over the texts' arrival order that proves the scheduled loop
(monitor -> retrain -> promote) for a classifier, as ``r2n2.ops.replay`` does for a price series.

A step is one arrival batch: the next ``batch`` texts of the pretraining domain (texts the transfer target's
pattern does not match) in time order, extended over texts that share its last time, so no time is split
between two batches. ``start`` and ``end`` are in the units of the text time column: arrival indices for the
built-in corpus (whose arrival order is simulated: seeded, independent of the label) or for a file without a
time column; ISO dates for a file with one. At each batch, in this order:

1. the deployed champion predicts the batch: truly out of sample, it trained only on texts of earlier batches
   (``model_train_end``, the last time it saw, is before every row's ``date``);
2. the batch's labels arrive; every ``monitor_every`` batches the calibrated monitor checks the champion's newest
   post-cut-off texts with the deployed monitor's signals (``r2n2.ops.monitoring.text_frame``: text length,
   share of unseen words, predicted classes, error rate), skipping texts whose near-duplicate group it saw;
3. every ``retrain_every`` batches, or right after an alarm, a challenger is trained on every text known so far:
   its newest ``window.val_fraction`` is its validation set (early stopping), near-duplicates of a training text
   leave that set (as the window stage does). From scratch (its own BPE tokenizer on its training texts) or
   warm-started (the champion's tokenizer and weights, ``warm_epochs`` epochs);
4. promotion (``decide_promotion(kind="classifier")``): both models on the challenger's validation texts that
   arrived after the champion's cut-off: never trained on by either, never a future text.

Beside the champion the timeline records the first model never retrained, "always retrain" (every challenger
deployed, no test) and the majority class of the first training period.
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..cases.text import (TextData, TextMeta, encode_texts, label_ids, source_domain, text_frame, text_signals,
                          text_vocab, time_splits)
from ..data.sources import LABELS, read_parquet
from ..errors import ConfigError, DataError
from ..paths import CasePaths
from .monitoring import check_window, fit_frame_monitor, signal_config
from .promotion import decide_promotion
from .replay import ReplaySchedule, period_ends, plot_live_error, report_counts

__all__ = ["TextReplay", "arrival_batches", "DEFAULT_BATCH"]

DEFAULT_BATCH = 500   # texts per arrival batch: ~1.5 % of the built-in corpus, enough for a stable error rate
_MIN_KNOWN = 100      # texts before the start that a first model needs at the least
_ROLL = 3             # batches in the plot's rolling error rate


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
class TextModel:
    model: object
    tokenizer: str                          # the model's own BPE tokenizer (JSON)
    meta: object                            # TextMeta: cuts (val_start, test_start) in the stream's time units
    n_known: int                            # it trained (and validated) on stream positions [0, n_known)
    train_end: object                       # the time of its last known text
    vocab: set                              # words of its training texts (the new-word signal's reference)
    train: np.ndarray                       # positions of its training texts
    val: np.ndarray                         # positions of its validation texts (near-duplicates of training left out)
    preds: dict = field(default_factory=dict)  # stream position -> predicted class id
    monitor: object = None                  # the calibrated monitor, fitted lazily; False: too little history
    window: int = 0
    monitor_note: str = ""


@dataclass
class TextReplay(ReplaySchedule):
    """The simulated arrival of one text case; ``run_until(until)`` advances it (one Prefect sub-run each)."""

    batch: int = DEFAULT_BATCH
    reference_windows: int = 16             # the monitor's window is at most 1/16 of the validation texts (below)

    def __post_init__(self):
        from ..data.textkey import near_duplicate_keys
        from ..evaluate.baselines import majority_baseline

        for flag, v in (("--batch", self.batch), ("--retrain-every", self.retrain_every),
                        ("--monitor-every", self.monitor_every)):
            if int(v) < 1:
                raise ConfigError(f"{flag} must be >= 1, got {v}.")
        self.paths = CasePaths(self.case_name, Path(self.root))
        df = read_parquet(self.paths.validated, f"validated {self.case_name} data")
        df = df[source_domain(df["text"], self.cfg.window.finetune_pattern)]
        df = df.sort_values("time", kind="stable").reset_index(drop=True)
        self.dates = pd.api.types.is_datetime64_any_dtype(df["time"])
        df["label_id"] = label_ids(df["label"])
        df["key"] = near_duplicate_keys(df["text"])
        self.stream = df
        self.times = df["time"].to_numpy()
        # first position of each text's near-duplicate group: a text is new to a model that knew [0, n) iff >= n
        self.first_seen = pd.Series(np.arange(len(df))).groupby(df["key"].to_numpy()).transform("min").to_numpy()
        lo, hi = self._time(self.start, "--start"), self._time(self.end, "--end")
        p0, p1 = int(np.searchsorted(self.times, lo, "left")), int(np.searchsorted(self.times, hi, "right"))
        if p1 <= p0:
            raise DataError(f"no {self.case_name} texts arrive between --start {self.start} and --end {self.end} "
                            f"(the texts span {self._json(self.times[0])} .. {self._json(self.times[-1])}).")
        if p0 < _MIN_KNOWN:
            raise DataError(f"only {p0} {self.case_name} texts arrive before --start {self.start}; a first model "
                            f"needs at least {_MIN_KNOWN}. Start the replay later.")
        self.batches = [(p0 + a, p0 + b) for a, b in arrival_batches(self.times[p0:p1], self.batch)]
        self.step = self.since_retrain = 0
        self.counts = {"checks": 0, "alarms": 0, "retrains": 0, "promotions": 0}
        self.seconds = {"train": 0.0, "monitor": 0.0, "predict": 0.0}
        self.signals = text_signals(len(LABELS))
        self.mcfg = signal_config(self.cfg.monitor, self.signals)
        self.log(f"replay {self.case_name}: {p1 - p0} texts in {len(self.batches)} batches from "
                 f"{self._json(self.times[p0])} to {self._json(self.times[p1 - 1])}; training the first model on "
                 f"the {p0} texts before")
        self.champion = self._train(p0, None)
        self.never = self.latest = self.champion
        self.majority = int(majority_baseline(df["label_id"].to_numpy()[self.champion.train], 1)[0])

    # -- time units -------------------------------------------------------------------------------
    def _time(self, value, flag: str = "until"):
        """A bound in the units of the time column: an ISO date/time, or an arrival index."""
        try:
            return np.datetime64(pd.Timestamp(str(value))) if self.dates else int(str(value))
        except ValueError:
            unit = ("an ISO date such as 2015-06-30 (the texts' time column holds dates)" if self.dates else
                    "an arrival index such as 20000 (the texts have no time column; the built-in corpus's arrival "
                    "order is simulated)")
            raise ConfigError(f"{flag} for the {self.case_name} replay must be {unit}, got {str(value)[:80]!r}.") \
                from None

    def _json(self, v):
        return pd.Timestamp(v).isoformat() if self.dates else int(v)

    # -- models -----------------------------------------------------------------------------------
    def _train(self, n_known: int, warm_from: TextModel | None) -> TextModel:
        """A model trained on stream positions [0, n_known): the newest ``val_fraction`` validates."""
        from tokenizers import Tokenizer

        from ..data.window import train_tokenizer
        from ..models.core import build_model
        from ..stages import fit
        from ..train import seed_everything

        t0 = _time.perf_counter()
        w = self.cfg.window
        known = self.stream.iloc[:n_known]
        t = self.times[:n_known]
        val_start = t[n_known - max(1, int(n_known * w.val_fraction))]
        split, nd = time_splits(known["time"], known["text"], [val_start], keys=known["key"])
        train, val = np.flatnonzero(split == "train"), np.flatnonzero(split == "val")
        if len(train) == 0 or len(val) == 0:
            raise DataError(f"the {n_known} {self.case_name} texts known at {self._json(t[-1])} leave "
                            f"{len(train)} to train and {len(val)} to validate on (near-duplicates of training texts "
                            "leave validation); start the replay later or raise window.val_fraction.")
        if warm_from is None:  # its own tokenizer, fitted on its training texts only
            tok_json = train_tokenizer(known["text"].iloc[train], w.vocab_size).to_str()
        else:  # the champion's tokenizer: its weights index that vocabulary
            tok_json = warm_from.tokenizer
        tok = Tokenizer.from_str(tok_json)
        table = pd.DataFrame({"domain": "source", "split": split, "ids": encode_texts(tok, known["text"], w.max_tokens),
                              "label_id": known["label_id"].to_numpy()})
        after = t[-1] + (np.timedelta64(1, "us") if self.dates else 1)  # the first moment it never saw
        meta = TextMeta(case=self.case_name, time="date" if self.dates else "arrival",
                        cuts={k: self._json(v) for k, v in (("start", t[0]), ("val_start", val_start),
                                                            ("test_start", after), ("end", t[-1]))},
                        splits={}, vocab_size=tok.get_vocab_size(), max_tokens=w.max_tokens, near_duplicates=nd)
        data = TextData.in_memory(self.case, self.cfg, meta, table)
        cfg = self.cfg
        seed_everything(cfg.train.seed)
        model = build_model(data.model_config())
        if warm_from is not None:
            model.load_state_dict(warm_from.model.state_dict())
            cfg = replace(cfg, train=replace(cfg.train, epochs=min(self.warm_epochs, cfg.train.epochs)))
        fit(cfg, data, model, "pretrain", f"replay-{self._json(t[-1])}", self.paths, seed=cfg.train.seed)
        self.seconds["train"] += _time.perf_counter() - t0
        m = TextModel(model=model, tokenizer=tok_json, meta=meta, n_known=n_known, train_end=t[-1],
                      vocab=text_vocab(known["text"].iloc[train]), train=train, val=val)
        self._predict(m, val)  # the monitor's reference and the promotion window
        return m

    def _predict(self, m: TextModel, positions) -> np.ndarray:
        """Class ids of ``m`` on stream positions (each text predicted once per model, then cached)."""
        from ..cases.classify import predict_texts

        positions = np.asarray(positions, dtype=np.int64)
        missing = [int(p) for p in positions if int(p) not in m.preds]
        if missing:
            t0 = _time.perf_counter()
            probs = predict_texts(m.model, m.tokenizer, m.meta, self.stream["text"].iloc[missing].tolist())
            m.preds.update(zip(missing, probs[[f"prob_{l}" for l in m.meta.labels]].to_numpy().argmax(1).tolist()))
            self.seconds["predict"] += _time.perf_counter() - t0
        return np.asarray([m.preds[int(p)] for p in positions], dtype=np.int64)

    # -- monitoring -------------------------------------------------------------------------------
    def _monitor(self, hi: int) -> dict:
        """Check the champion's newest post-cut-off texts known at position ``hi`` (labels arrived)."""
        t0 = _time.perf_counter()
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
                c.monitor, c.monitor_note = False, f"no verdict: too little history to calibrate the monitor ({exc})"
        if c.monitor is False:
            out = {"alarm": False, "signals": {}, "verdict": c.monitor_note}
        else:
            post = np.arange(c.n_known, hi)
            post = post[self.first_seen[post] >= c.n_known][-c.window:]  # new to the champion, newest first
            frame = text_frame(self.stream.iloc[post], self._predict(c, post), c.vocab)
            out = check_window(c.monitor, frame, c.meta, self.mcfg, inputs=list(self.signals.inputs),
                               time=self.signals.time, bench=self.signals.bench)
        self.seconds["monitor"] += _time.perf_counter() - t0
        return out

    # -- the calendar -----------------------------------------------------------------------------
    def run_until(self, until: str | None = None) -> dict:
        """Advance batch by batch through the batch whose last text arrived at ``until`` (a value of
        ``period_ends()``; default: the end). Returns this period's counts."""
        stop = None if until is None else self._time(until)
        counts = {"batches": 0, "texts": 0, "alarms": 0, "retrains": 0, "promotions": 0}
        labels = np.asarray(LABELS, dtype=object)
        while self.step < len(self.batches) and (stop is None or self.times[self.batches[self.step][1] - 1] <= stop):
            lo, hi = self.batches[self.step]
            pos = np.arange(lo, hi)
            c = self.champion
            rec = pd.DataFrame({"date": self.times[lo:hi], "batch": self.step,
                                "actual": labels[self.stream["label_id"].to_numpy()[lo:hi]],
                                "prediction": labels[self._predict(c, pos)], "model_train_end": c.train_end,
                                "never_retrained": labels[self._predict(self.never, pos)],
                                "always_retrained": labels[self._predict(self.latest, pos)],
                                "majority": labels[self.majority], "alarm": False, "retrained": False,
                                "promoted": False, "monitor_p_min": np.nan})
            self.step += 1
            self.since_retrain += 1
            counts["batches"] += 1
            counts["texts"] += hi - lo
            alarm = False
            if self.step % self.monitor_every == 0:  # the batch's labels have arrived
                m = self._monitor(hi)
                self.counts["checks"] += 1
                alarm = bool(m["alarm"])
                ps = [s.get("p_value") for s in m["signals"].values() if s.get("p_value") is not None]
                rec["alarm"], rec["monitor_p_min"] = alarm, (min(ps) if ps else np.nan)
                if alarm:
                    counts["alarms"] += 1
                    (self.warn or self.log)(f"batch {self.step - 1} (through {self._json(self.times[hi - 1])}): {m['verdict']}")
            if self.since_retrain >= self.retrain_every or alarm:
                counts["retrains"] += 1
                challenger = self._train(hi, self.champion if self.warm_start else None)
                decision = self._decide(challenger, hi)
                rec["retrained"], rec["promoted"] = True, decision["promoted"]
                counts["promotions"] += int(decision["promoted"])
                self.events.append({"batch": self.step - 1, "decided_through": self._json(self.times[hi - 1]),
                                    "trigger": "alarm" if alarm else "schedule", "promoted": decision["promoted"],
                                    "reason": decision["reason"], "window": decision["window"],
                                    "p_value": decision["test"]["p_value"],
                                    "champion_train_end": self._json(self.champion.train_end),
                                    "challenger_val_start": challenger.meta.cuts["val_start"]})
                self.latest = challenger
                if decision["promoted"]:
                    self.champion = challenger
                self.since_retrain = 0
            self.rows.append(rec)
        for k in ("alarms", "retrains", "promotions"):
            self.counts[k] += counts[k]
        return counts

    def _decide(self, challenger: TextModel, hi: int) -> dict:
        """Champion vs challenger on the challenger's validation texts that arrived after the champion's
        cut-off: neither trained on them, and none arrived after the batch being decided (position < ``hi``)."""
        champ = self.champion
        win = challenger.val[challenger.val >= champ.n_known]
        if len(win) == 0:
            return {"promoted": False, "reason": "no fresh texts to compare on; kept the champion.", "window": None,
                    "test": {"p_value": None}}
        y = self.stream["label_id"].to_numpy()[win]
        return decide_promotion(actual=y, champion_pred=self._predict(champ, win),
                                challenger_pred=self._predict(challenger, win), kind="classifier",
                                window={"start": self._json(self.times[win[0]]), "end": self._json(self.times[win[-1]])},
                                n_classes=len(LABELS), n_resamples=self.cfg.evaluate.bootstrap,
                                seed=self.cfg.evaluate.seed)

    def period_ends(self) -> list[str]:
        """The time of the last text of each scheduled retrain period (the replay's sub-runs)."""
        return [str(self._json(self.times[hi - 1])) for _, hi in period_ends(self.batches, self.retrain_every)]

    def timeline(self) -> pd.DataFrame:
        """One row per replayed text: its time (``date``), batch, label, every line's prediction, the champion's
        ``model_train_end`` and the batch's ``alarm`` / ``retrained`` / ``promoted`` flags (on every row of it)."""
        return pd.concat(self.rows, ignore_index=True) if self.rows else pd.DataFrame()

    def write_report(self, out_dir: Path, *, seconds: float) -> dict:
        """timeline.parquet, summary.json, replay.md and live_error.png under ``out_dir``."""
        return write_text_replay_report(self, Path(out_dir), seconds=seconds)


def write_text_replay_report(rp: TextReplay, out_dir: Path, *, seconds: float) -> dict:
    """The text replay's outputs: accuracy and macro-F1 per line, paired comparisons of the champion with each
    other line (paired bootstrap of macro-F1 and McNemar; "tie" when the 95 % interval covers 0)."""
    from ..cases.classify import compare_classifiers
    from ..cases.forecast import comparison_table
    from ..evaluate.metrics import classification_metrics
    from ..evaluate.report import fmt, md_table
    from ..io import write_json_atomic, write_parquet_atomic, write_text_atomic

    tl = rp.timeline()
    if tl.empty:
        raise DataError("the replay has not run a batch yet; nothing to report.")
    write_parquet_atomic(tl, out_dir / "timeline.parquet")
    ids = {l: i for i, l in enumerate(LABELS)}
    k = len(LABELS)
    y = tl["actual"].map(ids).to_numpy()
    lines = {"deployed champion": "prediction", "never retrained": "never_retrained",
             "always retrain (no test)": "always_retrained", "majority class": "majority"}
    preds = {name: tl[c].map(ids).to_numpy() for name, c in lines.items()}
    scores = {name: {m: classification_metrics(y, p, list(LABELS))[m] for m in ("accuracy", "macro_f1")}
              for name, p in preds.items()}
    comps = [c for name in list(lines)[1:]
             for c in compare_classifiers(y, preds["deployed champion"], preds[name], "deployed champion", name, rp.cfg, k)]
    by_batch = tl.groupby("batch")[["alarm", "promoted"]].any()
    summary = {"case": rp.case_name, "time": "date" if rp.dates else "arrival",
               "start": rp._json(tl["date"].iloc[0]), "end": rp._json(tl["date"].iloc[-1]),
               "texts": len(tl), "batches": int(tl["batch"].nunique()), "batch": rp.batch,
               "retrain_every": rp.retrain_every, "monitor_every": rp.monitor_every, "warm_start": rp.warm_start,
               **rp.counts, "scores": scores, "comparisons": comps, "events": rp.events,
               "look_ahead_rows": int((tl["model_train_end"] >= tl["date"]).sum()),
               "seconds": {"total": round(seconds, 1), **{n: round(v, 1) for n, v in rp.seconds.items()}},
               "headline": "macro-F1: " + ", ".join(f"{n} {scores[n]['macro_f1']:.4f}" for n in
                                                    ("deployed champion", "never retrained", "majority class"))}
    summary["n_retrains"] = summary.pop("retrains")
    summary["retrains"] = [{"date": e["decided_through"], "model_sha256": None, "set": None} for e in rp.events]
    write_json_atomic(summary, out_dir / "summary.json")

    wrong = pd.DataFrame({name: p != y for name, p in preds.items()}).groupby(tl["batch"].to_numpy()).mean()
    plot_live_error(wrong.index.to_numpy(), {n: wrong[n].rolling(_ROLL, min_periods=1).mean().to_numpy()
                                             for n in lines}, out_dir / "live_error.png",
                    alarms=by_batch.index[by_batch["alarm"]], promotions=by_batch.index[by_batch["promoted"]],
                    xlabel="arrival batch", ylabel="error rate",
                    title=f"{rp.case_name}: live error rate per arrival batch of {rp.batch} texts, rolling {_ROLL} "
                          "batches (red: monitor alarms; ticks: promotions)")
    unit = "ISO times" if rp.dates else "arrival indices; the built-in corpus's order is simulated"
    ev = ["| batch | trigger | window | p | promoted |", "|---|---|---|---|---|"]
    span = lambda w: "none" if w is None else f"{w['start']} .. {w['end']}"  # noqa: E731
    ev += [f"| {e['batch']} | {e['trigger']} | {span(e['window'])} | {fmt(e['p_value'])} | {e['promoted']} |"
           for e in rp.events]
    md = "\n".join([
        f"# Replay: {rp.case_name}, {summary['start']} to {summary['end']} ({unit})", "",
        f"{summary['texts']} texts in {summary['batches']} arrival batches of {rp.batch}; a retrain every "
        f"{rp.retrain_every} batches or after an alarm ({'warm-started from the champion' if rp.warm_start else 'from scratch, each with its own tokenizer'}), "
        f"the monitor every {rp.monitor_every} batches. Every prediction comes from a model trained only on texts "
        f"that arrived before it ({summary['look_ahead_rows']} rows violate this).", "",
        *report_counts(summary),
        md_table(scores, ["accuracy", "macro_f1"], first="line"), "",
        "Paired comparisons, the deployed champion (a) vs each line (b); diff = a minus b, verdict \"tie\" when the "
        "95 % interval covers 0:", "", comparison_table(comps), "",
        "Retrains (the promotion window: the challenger's validation texts after the champion's cut-off):", "",
        *ev, "", "![live error](live_error.png)", ""])
    write_text_atomic(md, out_dir / "replay.md")
    return summary
