"""Trainer, fine-tuning and evaluation on small real-shaped data: determinism, resume after kill, frozen
encoder, metrics side by side with baselines."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from flows.cli import main
from r2n2 import load_checkpoint

from .conftest import make_prices, make_texts, predict_sets

SMALL = ["--set", "stocks.data.source=prices.csv", "--set", "stocks.data.columns.close=Price",
         "--set", "stocks.validate.min_rows=100", "--set", "stocks.window.lookback=10",
         "--set", "stocks.window.pretrain_entity=alpha", "--set", "stocks.window.finetune_entity=beta",
         "--set", "stocks.model.hidden_size=8", "--set", "stocks.train.epochs=3", "--set", "stocks.finetune.epochs=2",
         "--set", "stocks.train.batch_size=32", "--set", "stocks.window.val_start=null",
         "--set", "stocks.window.test_start=null"]
TEXT = ["--set", "sentiment.data.source=tweets.csv", "--set", "sentiment.data.columns.text=body",
        "--set", "sentiment.data.columns.label=sentiment", "--set", "sentiment.validate.min_rows=100",
        "--set", "sentiment.window.vocab_size=200", "--set", "sentiment.model.hidden_size=8",
        "--set", "sentiment.model.embed_size=8", "--set", "sentiment.train.epochs=2",
        "--set", "sentiment.finetune.epochs=2", "--set", "sentiment.window.finetune_pattern=iphone"]


def two_entities(n=400):
    a, b = make_prices(n, seed=1), make_prices(n, seed=2)
    a.insert(0, "Entity", "alpha")
    b.insert(0, "Entity", "beta")
    return pd.concat([a, b], ignore_index=True)


def stages(capsys, case, args, names):
    for stage in names:
        code = main([stage, case, *args])
        out, err = capsys.readouterr()
        assert code == 0, err
    return out


@pytest.fixture
def stocks_windows(project, capsys):
    two_entities().to_csv("prices.csv", index=False)
    stages(capsys, "stocks", SMALL, ["ingest", "validate", "window"])
    return project


@pytest.mark.slow
def test_stocks_train_finetune_evaluate(stocks_windows, capsys):
    out = stages(capsys, "stocks", SMALL, ["train", "baselines", "finetune", "evaluate"])
    assert "Diebold" in out and "tie" in out
    m = json.load(open("data/reports/stocks/metrics.json"))
    assert set(m) >= {"model", "finetuned", "scratch", "baselines", "tests", "target_baselines", "comparisons"}
    assert set(m["baselines"]) == {"random_walk", "historical_mean", "no_relational"}
    pairs = {(c["a"], c["b"], c["test"]) for c in m["comparisons"]}
    for b in ("random_walk", "historical_mean", "no_relational"):
        assert {("model", b, "diebold_mariano"), ("model", b, "stationary_bootstrap")} <= pairs, b
    assert {("model", "random_walk", "clark_west"), ("model", "historical_mean", "clark_west")} <= pairs
    assert {("finetuned", "scratch", "diebold_mariano"), ("finetuned", "scratch", "stationary_bootstrap")} <= pairs
    assert ("sign_strategy", "buy_and_hold", "ledoit_wolf_hac") in pairs
    for c in m["comparisons"]:
        assert set(c) >= {"a", "b", "metric", "diff", "ci_low", "ci_high", "p_value", "test", "verdict", "sided", "mde"}
        assert c["sided"] == ("one-sided" if c["test"] == "clark_west" else "two-sided")
        if c["ci_low"] is not None and c["ci_low"] <= 0 <= c["ci_high"]:
            assert c["verdict"] == "tie"
    assert set(m["trading"]) == {"sign_strategy", "buy_and_hold", "gross", "cost_bps"}
    assert m["trading"]["gross"]["sign_strategy"]["sharpe"] >= m["trading"]["sign_strategy"]["sharpe"]
    pw = m["power"]["oos_r2_vs_historical_mean"]
    assert 0 < pw["one-sided"]["oos_r2"] < pw["two-sided"]["oos_r2"] and pw["n"] == m["model"]["n"]
    assert {"rmse_ratio_minus_1", "sharpe_net", "sharpe_gross",
            "finetuned_oos_r2_vs_historical_mean"} <= set(m["power"])
    report = Path("data/reports/stocks/report.md").read_text()
    assert "could not have been seen" in report and "Pesaran–Timmermann (one-sided" in report
    for name in ("mae", "rmse", "mase", "directional_accuracy", "rel_rmse_random_walk"):
        assert isinstance(m["model"][name], float)
    assert m["baselines"]["random_walk"]["rel_rmse_random_walk"] == 1.0
    assert 0 <= m["tests"]["diebold_mariano_pvalue"] <= 1
    for png in ("forecast", "cumulative", "learning_curves"):
        assert (stocks_windows / f"data/reports/stocks/plots/{png}.png").read_bytes()[:4] == b"\x89PNG"
    # the frozen encoder of the fine-tuned model is exactly the pretrained one
    pre, _ = load_checkpoint("data/models/stocks/model.pt")
    ft, _ = load_checkpoint("data/models/stocks-finetuned/model.pt")
    for k, v in pre.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(v, ft.state_dict()[k]), k
    assert not torch.equal(pre.fc.weight, ft.fc.weight)
    # batch prediction for a new file of the same schema, from the checkpoint alone
    two_entities(60).to_csv("new.csv", index=False)
    assert main(["predict", "stocks", "--input", "new.csv", "--output", "pred.parquet", *predict_sets(SMALL)]) == 0
    pred = pd.read_parquet("pred.parquet")
    assert list(pred.columns) == ["entity", "origin_date", "target_date", "horizon_days", "forecast_return_1d"]
    assert (pred["target_date"] > pred["origin_date"]).all() and (pred["horizon_days"] == 1).all()
    for _, part in pred.groupby("entity"):  # the next row's origin is the trading day this row forecasts
        assert (part["target_date"].to_numpy()[:-1] == part["origin_date"].to_numpy()[1:]).all()
    assert pred.groupby("entity").size().to_dict() == {"alpha": 60 - 10, "beta": 60 - 10}  # one per full window
    assert pred["forecast_return_1d"].notna().all()


@pytest.mark.slow
def test_transfer_trains_every_seed_from_that_seeds_pretrained_model(stocks_windows, capsys):
    """With evaluate.seeds=2 the finetune stage fine-tunes seed s from the pretrained model of seed s and trains
    a scratch control per seed; evaluation reports both across seeds with a paired test, and seed 0's transfer
    models are the bytes a one-seed run gives."""
    stages(capsys, "stocks", SMALL, ["train", "finetune"])
    one = {d: load_checkpoint(f"data/models/stocks-{d}/model.pt")[0].state_dict() for d in ("finetuned", "scratch")}
    two = [*SMALL, "--set", "stocks.evaluate.seeds=2", "--set", "stocks.evaluate.plots=false"]
    stages(capsys, "stocks", two, ["train", "baselines", "finetune", "evaluate"])
    for d in ("finetuned", "scratch"):
        again = load_checkpoint(f"data/models/stocks-{d}/model.pt")[0].state_dict()
        assert all(torch.equal(v, again[k]) for k, v in one[d].items()), d
    pre1, _ = load_checkpoint("data/models/stocks/seed-1/model.pt")
    ft1, meta = load_checkpoint("data/models/stocks-finetuned/seed-1/model.pt")
    assert meta["seed"] == 1 and load_checkpoint("data/models/stocks-scratch/seed-1/model.pt")[1]["seed"] == 1
    for k, v in pre1.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(v, ft1.state_dict()[k]), k  # frozen encoder = seed 1's pretrained encoder
    m = json.load(open("data/reports/stocks/metrics.json"))
    assert {n: s["rel_rmse_random_walk"]["n"] for n, s in m["transfer_seeds"].items()} == {"finetuned": 2, "scratch": 2}
    assert m["seeds"]["model"]["rmse"]["n"] == 2
    for test in ("paired_t_seeds", "two_way_bootstrap_seeds_items"):
        seeded = {(c["a"], c["b"]) for c in m["comparisons"] if c["test"] == test}
        assert seeded == {("model", "no_relational"), ("finetuned", "scratch")}, test
    two = next(c for c in m["comparisons"] if c["test"] == "two_way_bootstrap_seeds_items" and c["b"] == "no_relational")
    assert two["n_seeds"] == 2 and two["ci_low"] <= two["diff"] <= two["ci_high"] and two["verdict"]
    report = Path("data/reports/stocks/report.md").read_text()
    assert "Transfer across seeds" in report and "fine-tuned vs scratch is a **" in report


def test_training_is_deterministic(stocks_windows, capsys):
    stages(capsys, "stocks", SMALL, ["train"])
    first = Path("data/models/stocks/model.pt")
    a, meta_a = load_checkpoint(first)
    first.unlink()
    stages(capsys, "stocks", SMALL, ["train"])
    b, meta_b = load_checkpoint(first)
    assert meta_a["history"] == meta_b["history"]
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted(tmp_path):
    root = Path(__file__).resolve().parents[1]
    # enough epochs that the run cannot finish between the first resume state and the kill, however fast one
    # epoch is (one torch thread on an idle machine finished 6 of them inside the old 0.3 s wait)
    args = [*SMALL, "--set", "stocks.train.epochs=40", "--set", "stocks.train.patience=100",
            "--set", "stocks.model.hidden_size=24", "--set", "stocks.model.dropout=0.2"]
    env = dict(os.environ, PYTHONPATH=str(root))
    cli = [sys.executable, "-m", "flows.cli"]
    runs = {}
    for name in ("killed", "clean"):
        d = tmp_path / name
        d.mkdir()
        (d / "params.yaml").write_text((root / "params.yaml").read_text())
        two_entities(1500).to_csv(d / "prices.csv", index=False)
        for stage in ("ingest", "validate", "window"):
            subprocess.run([*cli, stage, "stocks", *args], cwd=d, env=env, check=True, capture_output=True)
        runs[name] = d
    state = runs["killed"] / "data/state/stocks/model-0.pt"
    proc = subprocess.Popen([*cli, "train", "stocks", *args], cwd=runs["killed"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(0.05)  # inside epoch 2 (the state is written atomically at the end of epoch 1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists(), "the run finished before it could be killed"
    assert not (runs["killed"] / "data/models/stocks/model.pt").exists()
    resumed = subprocess.run([*cli, "train", "stocks", *args], cwd=runs["killed"], env=env, capture_output=True,
                             text=True, check=True)
    assert "resuming after epoch" in resumed.stderr
    subprocess.run([*cli, "train", "stocks", *args], cwd=runs["clean"], env=env, check=True, capture_output=True)
    a, meta_a = load_checkpoint(runs["killed"] / "data/models/stocks/model.pt")
    b, meta_b = load_checkpoint(runs["clean"] / "data/models/stocks/model.pt")
    assert json.loads(meta_a["history"]) == json.loads(meta_b["history"])
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert not state.exists()


@pytest.mark.slow
def test_sentiment_train_finetune_evaluate(project, capsys):
    make_texts(900).to_csv("tweets.csv", index=False)
    out = stages(capsys, "sentiment", TEXT, ["ingest", "validate", "window", "train", "baselines", "finetune",
                                             "evaluate"])
    m = json.load(open("data/reports/sentiment/metrics.json"))
    assert set(m["baselines"]) == {"majority", "tfidf_logreg", "vader", "no_relational"}
    pairs = {(c["a"], c["b"], c["test"]) for c in m["comparisons"]}
    for b in ("tfidf_logreg", "vader", "no_relational"):  # macro-F1 resampled by near-duplicate group
        assert ("model", b, "group_bootstrap") in pairs and any(p[:2] == ("model", b) and "mcnemar" in p[2]
                                                                 for p in pairs), b
    assert ("finetuned", "scratch", "group_bootstrap") in pairs
    assert set(m["power"]["macro_f1"]) >= {"model vs tfidf_logreg", "finetuned vs scratch"}
    assert all(c["mde"] is not None and c["sided"] == "two-sided" for c in m["comparisons"])
    assert "tfidf_logreg_source_and_target" in m["target_baselines"]
    assert {"finetuned", "scratch", "target_baselines"} <= set(m)
    assert m["model"]["confusion_matrix"] and len(m["model"]["confusion_matrix"]) == 3
    majority = m["baselines"]["majority"]
    assert majority["accuracy"] == pytest.approx(max(sum(r) for r in m["model"]["confusion_matrix"]) / majority["n"])
    for png in ("confusion", "learning_curves", "attention"):
        assert (project / f"data/reports/sentiment/plots/{png}.png").is_file()
    assert "TF-IDF" in out
    two = [*TEXT, "--set", "sentiment.evaluate.seeds=2", "--set", "sentiment.evaluate.plots=false"]
    stages(capsys, "sentiment", two, ["train", "baselines", "finetune", "evaluate"])
    m2 = json.load(open("data/reports/sentiment/metrics.json"))
    seeded = {(c["a"], c["b"]): c for c in m2["comparisons"] if c["test"] == "two_way_bootstrap_seeds_items"}
    assert set(seeded) == {("model", "no_relational"), ("finetuned", "scratch")}
    assert seeded["model", "no_relational"]["n_items"] == m2["test_period"]["n"]  # groups resampled, texts counted
    assert {(c["a"], c["b"]) for c in m2["comparisons"] if c["test"] == "group_bootstrap"} >= {("model", "vader")}
    pd.DataFrame({"body": ["I love my new iphone", "worst flight ever", "meeting at noon"]}).to_csv("new.csv")
    assert main(["predict", "sentiment", "--input", "new.csv", "--output", "pred.parquet", *predict_sets(TEXT)]) == 0
    pred = pd.read_parquet("pred.parquet")
    assert list(pred.columns) == ["text", "predicted", "prob_negative", "prob_neutral", "prob_positive"]
    assert pred[["prob_negative", "prob_neutral", "prob_positive"]].sum(axis=1).round(5).eq(1).all()


def test_multi_entity_mode_trains_on_aligned_windows(stocks_windows, capsys):
    args = [*SMALL, "--set", "stocks.model.entities=true"]
    stages(capsys, "stocks", args, ["train", "baselines", "evaluate"])
    model, _ = load_checkpoint("data/models/stocks/model.pt")
    assert model.config.entities is True
    x = torch.randn(2, 2, 10, 4)
    assert model(x).shape == (2, 2, 1)  # (batch, entities, output)
    m = json.load(open("data/reports/stocks/metrics.json"))
    assert m["model"]["n"] == m["baselines"]["random_walk"]["n"] > 0


def test_volatility_target_has_garch_baseline(stocks_windows, capsys):
    args = [*SMALL, "--set", "stocks.window.target=volatility", "--set", "stocks.window.horizon=5"]
    stages(capsys, "stocks", args, ["window", "train", "baselines", "evaluate"])
    m = json.load(open("data/reports/stocks/metrics.json"))
    assert set(m["baselines"]) == {"random_walk", "historical_mean", "garch_1_1", "no_relational"}
    assert "directional_accuracy" not in m["model"] and m["baselines"]["garch_1_1"]["rmse"] > 0
    assert "pesaran_timmermann_pvalue" not in m["tests"]


def test_evaluate_never_trains(stocks_windows, capsys, monkeypatch):
    """`r2n2 evaluate` loads checkpoints and scores them: not one optimiser step."""
    stages(capsys, "stocks", SMALL, ["train", "baselines", "finetune"])
    steps = []
    monkeypatch.setattr(torch.optim.Optimizer, "step", lambda self, *a, **k: steps.append(1))
    monkeypatch.setattr(torch.Tensor, "backward", lambda self, *a, **k: steps.append(1))
    stages(capsys, "stocks", SMALL, ["evaluate"])
    assert steps == []
    assert json.load(open("data/reports/stocks/metrics.json"))["baselines"]["no_relational"]["n"] > 0


def test_ablations_toggle_only_their_module():
    """The ablation's config differs from the main model's in `relational` alone (cell, size, pooling and
    budget are the main model's); the panel's cross-entity ablation differs in `entities` and in the identity
    embedding that only an entity model has (each stock alone has no partners to tell apart)."""
    import dataclasses

    from r2n2.registry import get_case
    from r2n2.registry import load_params

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    for name, expected in (("stocks", {"no_relational": {"relational"}}),
                           ("sentiment", {"no_relational": {"relational"}}),
                           ("panel", {"no_cross_entity": {"entities", "identity"},
                                     "gru_no_relational": {"relational", "entities", "identity"}})):
        cfg = params.case(name)
        main_cfg = dataclasses.asdict(cfg.model)
        for ablation, diff in expected.items():
            other = dataclasses.asdict(get_case(name).neural_baselines(cfg)[ablation])
            assert {k for k in main_cfg if main_cfg[k] != other[k]} == diff, (name, ablation)


@pytest.mark.slow
def test_seeds_command_writes_its_own_report_and_leaves_the_pipeline_outputs(project, capsys):
    """`r2n2 seeds` trains and evaluates N seeds on the pipeline's windows in a scratch folder: its report has
    the across-seed table, the pipeline's own single-seed outputs keep their bytes, and no scratch folder stays."""
    from flows.cli import main

    two_entities().to_csv("prices.csv", index=False)
    stages(capsys, "stocks", SMALL, ["ingest", "validate", "window", "train", "baselines", "finetune", "evaluate"])
    before = {p: p.read_bytes() for p in Path("data").rglob("*") if p.is_file() and "logs" not in p.parts}
    assert main(["seeds", "stocks", "--n", "2", *SMALL]) == 0, capsys.readouterr().err
    assert ("stocks: 2 seeds evaluated -> data/seeds/stocks/metrics.json, headline.json, report.md"
            in capsys.readouterr().out)
    m = json.loads(Path("data/seeds/stocks/metrics.json").read_text())
    shown = json.loads(Path("data/seeds/stocks/headline.json").read_text())  # what `dvc metrics show` lists
    assert shown["seeds"] == 2 and shown["model"] == m["seeds"]["model"]["rmse"]["mean"]
    assert m["seeds"]["model"]["rmse"]["n"] == 2 and m["seeds"]["model"]["rmse"]["sd"] is not None
    assert not Path("data/seeds/stocks/work").exists()
    assert {p: p.read_bytes() for p in before} == before
    assert main(["seeds", "stocks", "--n", "1", *SMALL]) == 2
    assert "--n must be at least 2 seeds (an across-seed spread needs two), got 1." in capsys.readouterr().err
