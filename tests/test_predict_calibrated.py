"""Issue 36, item 1: what `r2n2 predict` gives a new user. Text cases write the probabilities the evaluate stage
calibrated (its temperature, read from data/reports/<case>/calibration.json for those very model bytes) and, with
``--sets``, conformal label sets; a ``--set`` key predict would ignore is refused by name; a file lacking inputs is
told which raw columns to add; price cases state, in ``--help`` and in the summary, how many rows N input rows give.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flows.cli import main
from r2n2.cases.base import CALIBRATION_FILE
from r2n2.checkpoint import load_checkpoint
from r2n2.paths import CasePaths
from r2n2.registry import get_case, load_params, run_stage

from .conftest import write_tiny_project

PROBS = ["prob_negative", "prob_neutral", "prob_positive"]
PRICE_STAGES = ("ingest", "validate", "window", "train")


def _cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A tiny project: sentiment through evaluate (the calibration), the price cases through train."""
    root = tmp_path_factory.mktemp("predict")
    write_tiny_project(root)
    params = load_params(root / "params.yaml")
    for name, stages in (("sentiment", ("ingest", "validate", "window", "train", "baselines", "evaluate")),
                         ("stocks", PRICE_STAGES), ("volatility", PRICE_STAGES), ("panel", PRICE_STAGES)):
        cfg = params.case(name)
        cfg.data.source = str(root / cfg.data.source)
        for stage in stages:
            run_stage(stage, name, cfg, root)
    return root, params


# -- (a) calibrated probabilities and conformal sets -----------------------------------------------------------
def test_predict_writes_the_probabilities_evaluate_calibrated_and_their_conformal_sets(built, capsys, monkeypatch):
    from r2n2.cases.classify import class_logits
    from r2n2.evaluate.calibration import softmax

    root, params = built
    monkeypatch.chdir(root)
    paths = CasePaths("sentiment", root)
    cal = json.loads((paths.reports / "metrics.json").read_text())["calibration"]
    t = cal["temperature"]
    assert abs(t - 1) > 0.01, t  # a temperature that moves the probabilities, or the test proves nothing
    model, _ = load_checkpoint(paths.model_dir / "model.pt")
    data = get_case("sentiment").load(params.case("sentiment"), paths.windows)
    y, logits, rows = class_logits(model, data, "pretrain", "test")  # what evaluate scores, in its order
    expected, raw = softmax(logits, t), softmax(logits)  # evaluate's calibrated and raw test probabilities
    labels = data.meta.labels
    pd.DataFrame({"body": rows["text"]}).to_csv("test_texts.csv", index=False)  # tiny params: text column "body"

    code, out, err = _cli(capsys, ["predict", "sentiment", "--input", "test_texts.csv", "--output", "pred.csv",
                                   "--sets", "0.9"])
    assert code == 0, err
    assert f"probabilities calibrated (temperature {t:.4g}, fitted at evaluate: " in out, out
    assert "one row per text of the input, in its order" in out
    pred = pd.read_csv("pred.csv", keep_default_na=False)
    assert list(pred.columns) == ["text", "predicted", *PROBS, "set_0.9"]
    got = pred[PROBS].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert np.abs(got - raw).max() > 1e-3  # not the raw softmax
    assert (pred["predicted"] == [labels[i] for i in expected.argmax(1)]).all()
    # sets: never empty, always hold the top label, and reproduce evaluate's 90 % coverage and size on these texts
    sets = pred["set_0.9"].str.split("|")
    assert all(len(s) >= 1 and p in s for s, p in zip(sets, pred["predicted"]))
    covered = np.mean([labels[yi] in s for yi, s in zip(y, sets)])
    model_sets = cal["conformal"]["model"]
    assert covered == pytest.approx(model_sets["coverage"], abs=1e-12)
    assert np.mean([len(s) for s in sets]) == pytest.approx(model_sets["mean_set_size"], abs=1e-12)
    assert abs(covered - 0.9) < 0.1, covered  # near the stated level on ~130 texts
    record = json.loads((paths.reports / CALIBRATION_FILE).read_text())
    assert record["model"] == "data/models/sentiment/model.pt" and record["calibration"]["temperature"] == t
    assert record["calibration"]["conformal"]["thresholds"]["0.90"] == model_sets["threshold"]

    code, out, err = _cli(capsys, ["predict", "sentiment", "--input", "test_texts.csv", "--output", "raw.csv",
                                   "--uncalibrated"])
    assert code == 0 and "raw softmax probabilities (--uncalibrated)" in out, err
    np.testing.assert_allclose(pd.read_csv("raw.csv")[PROBS].to_numpy(), raw, rtol=0, atol=1e-6)


def test_another_models_probabilities_are_said_to_be_uncalibrated_and_get_no_sets(built, capsys, monkeypatch):
    """A model the evaluate stage did not calibrate (here the ablation; a champion retrained in data/ops/ alike)
    gets the raw softmax, and the summary says why; sets need the calibration, and a level must be one it holds."""
    root, _ = built
    monkeypatch.chdir(root)
    pd.DataFrame({"body": ["great day", "awful service"]}).to_csv("new.csv", index=False)
    other = "data/models/sentiment-baselines/no_relational/model.pt"
    code, out, err = _cli(capsys, ["predict", "sentiment", "--input", "new.csv", "--output", "o.csv", "--model", other])
    assert code == 0, err
    assert ("probabilities UNCALIBRATED (raw softmax): data/reports/sentiment/calibration.json was fitted for "
            "data/models/sentiment/model.pt (sha256 ") in out, out
    code, _, err = _cli(capsys, ["predict", "sentiment", "--input", "new.csv", "--output", "no.csv", "--model",
                                 other, "--sets", "0.9"])
    assert code == 2 and err.startswith("r2n2 predict: --sets needs the conformal thresholds the evaluate stage fits "
                                        "for the model, but data/reports/sentiment/calibration.json was fitted"), err
    code, _, err = _cli(capsys, ["predict", "sentiment", "--input", "new.csv", "--output", "no.csv", "--sets", "0.925"])
    assert code == 2 and err == ("r2n2 predict: --sets 0.925: sets are calibrated at the levels 0.50 to 0.99 in "
                                 "steps of 0.01, not 0.925.\n"), err
    assert not Path("no.csv").exists()


# -- (b) a --set key predict would ignore ----------------------------------------------------------------------
def test_a_set_key_predict_would_ignore_is_refused_by_name(project, capsys):
    code, out, err = _cli(capsys, ["predict", "stocks", "--input", "new.csv", "--output", "out.csv",
                                   "--set", "stocks.window.lookback=10"])
    assert code == 2 and out == ""
    assert err == (
        "r2n2 predict: --set stocks.window.lookback=10 is not used by predict: the checkpoint fixes the window, "
        "features, scalers and model as they were trained. predict honours only the keys that say how --input is "
        "read: stocks.data.columns, stocks.data.na_values, stocks.data.missing, stocks.data.encoding, "
        "stocks.data.entity, stocks.data.query, stocks.data.timezone, stocks.data.layout. To change "
        "stocks.window.lookback, set it for the stages that build the model (`r2n2 window stocks`, `r2n2 train "
        "stocks`), then predict with the model they write.\n")
    code, _, err = _cli(capsys, ["predict", "sentiment", "--input", "new.csv", "--output", "out.csv",
                                 "--set", "sentiment.data.source=tweets.csv"])
    assert code == 2 and err == (
        "r2n2 predict: --set sentiment.data.source=tweets.csv is not used by predict: --input names the file to "
        "predict. predict honours only the keys that say how --input is read: sentiment.data.columns, "
        "sentiment.data.na_values, sentiment.data.encoding.\n")
    code, _, err = _cli(capsys, ["predict", "stocks", "--input", "new.csv", "--output", "out.csv",
                                 "--set", "panel.data.na_values=[.]"])
    assert code == 2 and "predict stocks reads no other block of params.yaml" in err
    code, _, err = _cli(capsys, ["predict", "stocks", "--input", "new.csv", "--output", "out.csv", "--sets", "0.9"])
    assert code == 2 and "--uncalibrated and --sets apply to class probabilities; the stocks case" in err


# -- (c) a file lacking inputs ---------------------------------------------------------------------------------
def test_a_file_lacking_inputs_is_told_the_raw_columns_to_add(built, capsys, monkeypatch):
    root, _ = built
    monkeypatch.chdir(root)
    prices = pd.read_csv("prices.csv")
    prices.loc[prices["Entity"] == "alpha", ["Date", "Price"]].head(40).to_csv("close_only.csv", index=False)
    code, _, err = _cli(capsys, ["predict", "stocks", "--input", "close_only.csv", "--output", "out.csv"])
    assert code == 2 and err == (
        "r2n2 predict: the file lacks the price columns Open, High, Low: add them (names match in any case; other "
        "names: map them with stocks.data.columns). The model was trained on ret_open, ret_high, ret_low, ret_close, "
        "derived from the columns Open, High, Low, Close.\n"), err
    assert not Path("out.csv").exists()


# -- (d) the row-count rule of each price case -----------------------------------------------------------------
@pytest.mark.parametrize("name,k,n", [("stocks", 0, 25), ("volatility", 21, 45), ("panel", 19, 45)])
def test_each_price_case_gives_the_rows_its_help_and_summary_state(built, capsys, monkeypatch, name, k, n):
    """N rows of an entity (panel: N dates of every stock) give N - k - lookback forecasts, k the rows without
    features beyond the first window's start: stocks 0 (the first row has no return), volatility 21 (22 rows
    before the first 22-day mean of the Garman-Klass variance), panel 19 (20 rows before the 20-day features)."""
    root, params = built
    monkeypatch.chdir(root)
    case = get_case(name)
    _, ck = load_checkpoint(CasePaths(name, root).model_dir / "model.pt")
    from r2n2.cases.base import window_meta_of

    meta = window_meta_of(ck)
    lookback = meta.lookback
    source = pd.read_csv(Path(params.case(name).data.source).name)
    entity_col = next(c for c in source.columns if c.lower() == "entity")
    date_col = next(c for c in source.columns if c.lower() == "date")
    if name == "panel":  # the first n dates of every stock
        keep = source[source[date_col].isin(sorted(source[date_col].unique())[:n])]
    else:  # the first n rows of one entity
        keep = source[source[entity_col] == source[entity_col].iloc[0]].head(n)
    keep.to_csv("new.csv", index=False)
    code, out, err = _cli(capsys, ["predict", name, "--input", "new.csv", "--output", "out.csv"])
    assert code == 0, err
    pred = pd.read_csv("out.csv")
    per_entity = pred.groupby("entity").size()
    expected = n - k - lookback
    assert case.predict_count(meta, n) == expected > 0
    assert (per_entity == expected).all(), per_entity.to_dict()
    minus = f" - {k}" if k else ""
    assert f"give N{minus} - lookback" in out and f"lookback is {lookback} in this model, so N - {k + lookback}" in out
    assert f"{per_entity.index[0]}: {expected}" in out, out
    code, help_text, _ = _help(capsys, monkeypatch)
    assert f"{name}: {case.predict_rule()}" in " ".join(help_text.split())


def _help(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "10000")  # one line: argparse would wrap (breaking at hyphens) at the terminal width
    with pytest.raises(SystemExit) as exc:
        main(["predict", "--help"])
    out, err = capsys.readouterr()
    return exc.value.code, out, err
