"""The text replay: no look-ahead, promotion windows that are fresh and never future, an alarm soon after a planted
shift and few on a calm stream, determinism, and the CLI (a case without a replay fails in one paragraph)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.cli import main
from r2n2.cases.text import text_schema
from r2n2.registry import get_case, load_params
from r2n2.io import write_parquet_atomic
from r2n2.ops.textreplay import TextReplay, arrival_batches

from .conftest import TINY_PARAMS, rebuild_retrain

LABELS = ["negative", "neutral", "positive"]
# class words before the shift, and the words that replace them after it (with the label mapping flipped)
OLD = {0: ["awful", "hate", "broken", "terrible", "worst", "sad"], 1: ["today", "meeting", "report", "schedule",
       "update", "noon"], 2: ["love", "great", "awesome", "happy", "best", "nice"]}
NEW = {0: ["zorp", "quib", "flen", "darv", "mopt", "snib"], 1: ["glax", "trun", "vosk", "plim", "werd", "jorn"],
       2: ["kelb", "frum", "yast", "broz", "nift", "caup"]}
FILLER = [f"w{i}" for i in range(60)]
TINY = [f"sentiment.{s}.{k}={json.dumps(v)}" for s, sec in TINY_PARAMS["sentiment"].items() if s != "data"
        for k, v in sec.items()] + ["sentiment.train.epochs=1", "sentiment.evaluate.bootstrap=200",
                                    "sentiment.window.val_texts=450", "sentiment.window.holdout_texts=100"]


def make_stream(n: int, seed: int, *, shift_at: int | None = None, noise: float = 0.25,
                flip_at: int | None = None) -> pd.DataFrame:
    """Labelled texts in arrival order: 2-3 class words among 3-8 fillers; ``noise`` of the labels random. From
    ``shift_at`` on the class words are new words and the label is flipped (negative <-> positive); from
    ``flip_at`` on the words stay and every label moves on by one class (a model that learnt them is now worse
    than guessing the majority class)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        y = int(rng.integers(3))
        shifted = shift_at is not None and i >= shift_at
        rotated = flip_at is not None and i >= flip_at
        words = list(rng.choice((NEW if shifted else OLD)[y], int(rng.integers(2, 4)))) + \
            list(rng.choice(FILLER, int(rng.integers(3, 9))))
        rng.shuffle(words)
        label = (2 - y) if shifted else (y + 1) % 3 if rotated else y
        if rng.random() < noise:
            label = int(rng.integers(3))
        rows.append({"text": " ".join(words), "label": LABELS[label]})
    df = pd.DataFrame(rows)
    df["time"] = np.arange(n, dtype="int64")  # arrival index, as for a file without a time column
    return df


def _write_validated(df: pd.DataFrame) -> None:
    """The replay reads the validated table; write it as the validate stage would (same schema)."""
    write_parquet_atomic(df, Path("data/validated/sentiment.parquet"), text_schema(df))


def _replay(df, *, start, end, batch=100, retrain_every=100, monitor_every=1, warm_start=False, **extra):
    _write_validated(df)
    cfg = load_params("params.yaml", TINY).case("sentiment")
    rp = TextReplay(get_case("sentiment"), cfg, Path("."), str(start), str(end), batch=batch, retrain_every=retrain_every,
                    monitor_every=monitor_every, warm_start=warm_start, log=lambda m: None, **extra)
    rp.run_until()
    return rp


def test_arrival_batches_never_split_a_time():
    t = np.array([1, 2, 2, 2, 3, 4, 5, 5, 6])
    b = arrival_batches(t, 2)
    assert b == [(0, 4), (4, 6), (6, 8), (8, 9)]
    for (_, hi), (lo, _) in zip(b, b[1:]):
        assert t[hi - 1] < t[lo]
    dates = pd.to_datetime(["2015-01-01", "2015-01-01", "2015-01-02", "2015-01-03"]).to_numpy()
    assert arrival_batches(dates, 1) == [(0, 2), (2, 3), (3, 4)]


def test_no_look_ahead_and_fresh_promotion_windows(project):
    rp = _replay(make_stream(1700, 1), start=900, end=1699, retrain_every=2, monitor_every=2, warm_start=True)
    tl = rp.timeline()
    assert len(tl) == 800 and tl["batch"].nunique() == 8
    assert (tl["model_train_end"] < tl["date"]).all()  # every prediction from a model trained before the text
    assert rp.counts["retrains"] >= 4 and len(rp.events) == rp.counts["retrains"]
    for e in rp.events:
        w = e["window"]
        assert w is not None
        assert w["start"] >= e["champion_holdout_start"]  # never what the champion trained or early-stopped on
        assert w["start"] >= e["challenger_holdout_start"]  # never what the challenger trained or early-stopped on
        assert w["end"] <= e["date"]  # never a text after the batch being decided
    later = {e["step"]: e for e in rp.events}
    for b, e in later.items():  # the decided batch's successor holds only texts after the window
        nxt = tl[tl["batch"] == b + 1]
        assert nxt.empty or nxt["date"].min() > e["window"]["end"]


def test_same_seed_same_timeline(project):
    df = make_stream(1200, 2)
    runs = [_replay(df, start=800, end=1199, retrain_every=2, monitor_every=1).timeline() for _ in range(2)]
    pd.testing.assert_frame_equal(runs[0], runs[1])


def test_planted_shift_alarms_soon_and_a_calm_stream_rarely(project):
    alarms = checks = chart_alarms = 0
    for seed in (3, 4, 5):  # one calm stream has 16 checks: pooled, the rate is estimated, not a coin flip
        rp = _replay(make_stream(4600, seed), start=3000, end=4599)
        checks += rp.counts["checks"]
        alarms += rp.counts["alarms"]
        chart_alarms += int(rp.timeline().groupby("batch")["cusum_alarm"].any().sum())
    assert checks == 48 and alarms <= 0.05 * checks, (alarms, checks)
    assert chart_alarms <= alarms  # the CUSUM's alarms are part of the monitor's

    # the model becomes worse than the majority class (every label moves on by one class): the CUSUM of the live
    # error differential against the majority class crosses within two batches
    rp = _replay(make_stream(4600, 7, flip_at=3800), start=3000, end=4599)
    g = rp.timeline().groupby("batch").agg(first=("date", "min"), chart=("cusum_alarm", "any"))
    assert not g.loc[g["first"] < 3800, "chart"].any() and g.loc[g["first"] >= 3800, "chart"].iloc[:2].any(), g

    rp = _replay(make_stream(4600, 6, shift_at=3800), start=3000, end=4599)
    per_batch = rp.timeline().groupby("batch").agg(first=("date", "min"), alarm=("alarm", "any"))
    before = per_batch[per_batch["first"] < 3800]
    after = per_batch[per_batch["first"] >= 3800]
    assert len(before) == 8 and before["alarm"].sum() <= 2  # calm part: P(3+ of 8 | 5 % a check) < 0.6 %
    assert after["alarm"].iloc[:2].any(), per_batch  # found within 2 batches (200 texts) of the shift
    assert (rp.timeline()["model_train_end"] < rp.timeline()["date"]).all()


@pytest.mark.slow
def test_text_replay_retrains_reproduce_byte_for_byte_through_the_stage_commands(project, capsys, tmp_path):
    """Each from-scratch retrain of the text replay is the window and train stages on the texts known at its
    step (``data.until`` = an arrival index) with rolling cuts: its ``set``, given to `r2n2
    ingest/validate/window/train`, rebuilds the same model.pt bytes."""
    make_stream(1300, 9).to_csv("stream.csv", index=False)
    args = ["--set", "sentiment.data.source=stream.csv"]
    sets = [a for s in TINY for a in ("--set", s)]
    for stage in ("ingest", "validate"):
        assert main([stage, "sentiment", *sets, *args]) == 0, capsys.readouterr().err
    cfg = load_params("params.yaml", [*TINY, "sentiment.data.source=stream.csv"]).case("sentiment")
    rp = TextReplay(get_case("sentiment"), cfg, Path("."), "900", "1299", batch=100, retrain_every=2,
                    monitor_every=1, log=lambda m: None)
    rp.run_until()
    summary = rp.write_report(Path("data/reports/sentiment/replay"), seconds=0.0)
    retrains = summary["retrains"]
    assert len(retrains) >= 2 and all(r["model_sha256"] and r["set"] for r in retrains)
    assert len({r["model_sha256"] for r in retrains}) == len(retrains)  # each saw other texts
    for r in retrains[:2]:
        got = rebuild_retrain(r, tmp_path / r["date"], ["params.yaml", "stream.csv"],
                              lambda stage, extra: main([stage, "sentiment", *sets, *args, *extra]))
        assert got == r["model_sha256"], r["date"]
    assert summary["look_ahead_rows"] == 0 and summary["first_model"]["model_sha256"]
    assert all(e["window"] and e["window"]["end"] <= int(e["date"]) for e in summary["events"])


def test_cli_replays_texts_end_to_end(project, prefect_server):
    # no capsys here: Prefect's console handler would keep its closed stream for the tests that follow
    _write_validated(make_stream(1000, 7))
    sets = [a for s in TINY for a in ("--set", s)]
    assert main(["replay", "sentiment", "--start", "700", "--end", "999", "--batch", "100", "--retrain-every", "2",
                 "--monitor-every", "1", "--warm-start", *sets]) == 0
    rep = project / "data/ops/sentiment/reports/sentiment/replay"
    tl = pd.read_parquet(rep / "timeline.parquet")
    assert {"date", "batch", "prediction", "actual", "model_train_end", "alarm", "retrained", "promoted",
            "never_retrained", "always_retrained", "majority"} <= set(tl.columns)
    s = json.loads((rep / "summary.json").read_text())
    assert s["batches"] == 3 and s["n_retrains"] == 1 == len(s["retrains"]) and s["look_ahead_rows"] == 0
    md = (rep / "replay.md").read_text()
    assert "macro_f1 · bootstrap" in md and "accuracy · McNemar exact" in md  # the engine's names of the tests
    assert (rep / "live_error.png").stat().st_size > 10_000


@pytest.mark.parametrize("argv,message", [
    (["replay", "panel", "--start", "2015-01-01", "--end", "2016-01-01", "--batch", "10"],
     "a panel replay steps one trading date at a time"),
    (["replay", "stocks", "--start", "2015-01-01", "--end", "2016-01-01", "--batch", "10"],
     "--batch applies to texts only"),
    (["replay", "sentiment", "--start", "0", "--end", "9", "--batch", "0"], "--batch (texts per arrival batch)"),
])
def test_replay_refusals_are_one_paragraph(project, capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1, err


def test_text_start_in_the_wrong_units_is_one_paragraph(project):
    from r2n2.errors import ConfigError

    _write_validated(make_stream(300, 8))
    cfg = load_params("params.yaml", TINY).case("sentiment")
    with pytest.raises(ConfigError, match="must be an arrival index such as 20000"):
        TextReplay(get_case("sentiment"), cfg, Path("."), "2015-01-01", "2016-01-01", log=lambda m: None)
