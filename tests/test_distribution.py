"""Distribution heads (quantile, Student-t), their losses, split-conformal calibration, VaR backtests and a tiny
stocks run with a quantile head."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as st

from r2n2.evaluate.distribution import (apply_offsets, christoffersen, conformal_offsets, coverage_table,
                                        crps_quantile, historical_quantiles, kupiec_pof, pit_histogram)
from r2n2.models import ModelConfig, build_model
from r2n2.models.distribution import pinball_loss, quantile_transform, student_t_nll

from .conftest import predict_sets
from .test_training import SMALL, stages, two_entities

LEVELS = (0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)


# -- config ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"distribution": "gaussian"}, "model.distribution must be one of none, quantile, student_t"),
    ({"quantiles": (0.1, 0.05, 0.5)}, "strictly increasing"),
    ({"quantiles": (0.0, 0.5)}, "strictly increasing levels in (0, 1)"),
    ({"quantiles": (0.1, 0.9)}, "must contain 0.5"),
    ({"distribution": "quantile", "task": "classification"}, "needs model.task 'regression'"),
])
def test_bad_distribution_config(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ModelConfig(**kwargs)


# -- heads -----------------------------------------------------------------------------------------------
def test_quantiles_never_cross_for_random_inputs():
    torch.manual_seed(0)
    raw = torch.randn(1000, 9) * 20  # far beyond any trained range
    q = quantile_transform(raw, LEVELS)
    assert (q.diff(dim=-1) >= 0).all()  # softplus > 0 in exact arithmetic; float32 may round a tiny step to 0
    assert torch.equal(q[:, 4], raw[:, 4])  # the median is the free output


@pytest.mark.parametrize("entities", [False, True])
@pytest.mark.parametrize("relational", [False, True])
@pytest.mark.parametrize("cell", ["gru", "rmc"])
def test_heads_keep_the_point_forecast_shape(entities, relational, cell):
    x = torch.randn(5, 3, 6, 4) if entities else torch.randn(5, 6, 4)
    lead = (5, 3) if entities else (5,)
    for dist, p in (("quantile", 9), ("student_t", 3)):
        torch.manual_seed(0)
        m = build_model(ModelConfig(input_size=4, hidden_size=8, cell=cell, relational=relational, entities=entities,
                                    distribution=dist)).eval()
        d = m.predict_distribution(x)
        assert m(x).shape == (*lead, 1) and d.shape == (*lead, 1, p)
        point = d[..., 4] if dist == "quantile" else d[..., 0]
        assert torch.allclose(m(x), point)
        if dist == "quantile":
            assert (d.diff(dim=-1) >= 0).all()
        else:
            assert (d[..., 1] > 0).all() and (d[..., 2] > 2).all()
    with pytest.raises(ValueError, match="no distribution head"):
        build_model(ModelConfig(input_size=4, hidden_size=8))(x[..., :4] if not entities else x[:, 0], distribution=True)


def test_pinball_loss_equals_a_hand_computation():
    q = torch.tensor([[-1.0, 0.0, 2.0]])
    y = torch.tensor([0.5])
    # u = y - q = (1.5, 0.5, -1.5): 0.1 * 1.5, 0.5 * 0.5, (0.9 - 1) * -1.5
    hand = (0.15 + 0.25 + 0.15) / 3
    assert pinball_loss(q, y, (0.1, 0.5, 0.9)).item() == pytest.approx(hand)


def test_student_t_nll_equals_scipy_and_has_gradients():
    params = torch.tensor([[0.2, 1.5, 4.0], [-1.0, 0.5, 2.5]], requires_grad=True)
    y = torch.tensor([1.0, -0.3])
    loss = student_t_nll(params, y)
    hand = -np.mean([st.t.logpdf(1.0, 4.0, 0.2, 1.5), st.t.logpdf(-0.3, 2.5, -1.0, 0.5)])
    assert loss.item() == pytest.approx(hand, rel=1e-5)
    loss.backward()
    assert torch.isfinite(params.grad).all() and params.grad.abs().sum() > 0


# -- conformal -------------------------------------------------------------------------------------------
def _too_narrow(n, rng):
    """Exchangeable rows whose forecast quantiles are those of a N(0, 0.5) while y ~ N(0, 1): undercovering."""
    y = rng.normal(size=n)
    q = np.tile(st.norm.ppf(LEVELS) * 0.5, (n, 1))
    return y, q


def test_conformal_reaches_nominal_coverage_on_exchangeable_data():
    rng = np.random.default_rng(0)
    y_val, q_val = _too_narrow(2000, rng)
    y_test, q_test = _too_narrow(20000, rng)
    raw, _ = coverage_table(y_test, q_test, LEVELS)
    adj, _ = coverage_table(y_test, apply_offsets(q_test, conformal_offsets(q_val, y_val, LEVELS), LEVELS), LEVELS)
    for level, got in adj.items():
        nominal = float(level)
        assert raw[level] < nominal - 0.05  # it needed calibrating
        # split conformal: coverage in [1 - a, 1 - a + 1 / (n + 1)] in expectation; 4 binomial sd of sampling error
        assert abs(got - nominal) < 4 * math.sqrt(nominal * (1 - nominal) / 2000) + 1 / 2001


def test_conformal_offsets_use_only_the_rows_they_are_given():
    """The offsets are a function of the calibration rows alone: wild test rows change nothing, and the same
    calibration rows with the test rows appended (a leak) would give different offsets."""
    rng = np.random.default_rng(1)
    y_val, q_val = _too_narrow(500, rng)
    y_test = rng.normal(size=500) * 10
    q_test = np.tile(st.norm.ppf(LEVELS) * 0.5, (500, 1))
    offsets = conformal_offsets(q_val, y_val, LEVELS)
    leaked = conformal_offsets(np.vstack([q_val, q_test]), np.concatenate([y_val, y_test]), LEVELS)
    assert all(leaked[k] > offsets[k] for k in offsets) and leaked["0.9"] > offsets["0.9"] + 1
    # the 80 % offset is the ceil(501 * 0.8) = 401st smallest validation score
    s = np.sort(np.maximum(q_val[:, 2] - y_val, y_val - q_val[:, 6]))
    assert offsets["0.8"] == pytest.approx(s[math.ceil(501 * 0.8) - 1])
    assert (np.diff(apply_offsets(q_test, offsets, LEVELS), axis=1) >= 0).all()


def test_stocks_conformal_is_fitted_on_validation_rows_only(monkeypatch):
    """evaluate_distribution (through the engine's evaluate_heads) hands conformal_offsets the validation split's
    forecasts, never the test split's."""
    import r2n2.cases.forecast_dist as fd

    seen = {}

    def fake_quantiles(model, data, role, split):
        seen.setdefault("splits", []).append(split)
        n = {"val": 300, "test": 200}[split]
        y = np.full(n, 5.0 if split == "test" else 0.0)
        return y, np.tile(np.linspace(-1, 1, 9), (n, 1)), data_rows[split]

    data_rows = {"val": pd.DataFrame({"date": pd.bdate_range("2020-01-01", periods=300)}),
                 "test": pd.DataFrame({"date": pd.bdate_range("2021-06-01", periods=200)})}
    import r2n2.evaluate.engine as engine

    captured = {}
    real = engine.conformal_offsets

    def spy(q, y, levels):
        captured["y"] = y
        return real(q, y, levels)

    monkeypatch.setattr(fd, "forecast_quantiles", fake_quantiles)
    monkeypatch.setattr(engine, "conformal_offsets", spy)  # the engine fits every head's conformal offsets
    monkeypatch.setattr(fd, "distribution_baselines", lambda *a, **k: {})

    class M:
        config = ModelConfig(distribution="quantile")

    block, *_ = fd.evaluate_distribution(None, M(), np.full(200, 5.0), data_rows["test"], horizon=1)
    assert len(captured["y"]) == 300 and (captured["y"] == 0).all()  # a leak would bring the 5.0 test targets
    assert block["conformal"]["fitted_on"] == "validation" and block["coverage"]["0.9"] == 0.0


# -- scores and backtests --------------------------------------------------------------------------------
def test_kupiec_against_a_worked_example():
    # 250 days, 5 exceedances of a 1 % VaR: LR = -2 [245 log .99 + 5 log .01 - 245 log .98 - 5 log .02]
    hits = np.zeros(250, bool)
    hits[[10, 50, 51, 120, 200]] = True
    lr = -2 * (245 * math.log(0.99) + 5 * math.log(0.01) - 245 * math.log(0.98) - 5 * math.log(0.02))
    k = kupiec_pof(hits, 0.01)
    assert k["exceedances"] == 5 and k["lr"] == pytest.approx(lr) and lr == pytest.approx(1.9568, abs=1e-4)
    assert k["p_value"] == pytest.approx(st.chi2.sf(lr, 1))
    assert kupiec_pof(np.zeros(100, bool), 0.01)["lr"] == pytest.approx(-2 * 100 * math.log(0.99))


def test_christoffersen_against_hand_counts():
    hits = np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 0])
    # transitions: n00 = 4, n01 = 2, n10 = 2, n11 = 1
    c = christoffersen(hits, 0.05)
    assert c["transitions"] == {"n00": 4, "n01": 2, "n10": 2, "n11": 1}
    pi01, pi11, pi = 2 / 6, 1 / 3, 3 / 9
    ll1 = 4 * math.log(1 - pi01) + 2 * math.log(pi01) + 2 * math.log(1 - pi11) + math.log(pi11)
    ll0 = 6 * math.log(1 - pi) + 3 * math.log(pi)
    assert c["lr_ind"] == pytest.approx(-2 * (ll0 - ll1), abs=1e-12)
    assert c["lr_cc"] == pytest.approx(kupiec_pof(hits, 0.05)["lr"] + c["lr_ind"])
    assert c["p_value_cc"] == pytest.approx(st.chi2.sf(c["lr_cc"], 2))
    clustered = christoffersen(np.r_[np.zeros(90), np.ones(10)].astype(int), 0.1)
    assert clustered["p_value_ind"] < 0.001


def test_crps_pit_and_historical_simulation():
    y, q = np.array([0.0, 3.0]), np.tile(np.array([-1.0, 0.0, 1.0]), (2, 1))
    hand = [2 / 3 * (0.1 * 1 + 0 + 0.1 * 1), 2 / 3 * (0.1 * 4 + 0.5 * 3 + 0.9 * 2)]
    assert crps_quantile(y, q, (0.1, 0.5, 0.9)) == pytest.approx(hand)
    pit = pit_histogram(np.array([-2.0, 0.5, 2.0]), np.tile(q[0], (3, 1)), (0.1, 0.5, 0.9))
    assert [b["observed"] for b in pit] == pytest.approx([1 / 3, 0, 1 / 3, 1 / 3])
    r = np.arange(300.0)
    hs = historical_quantiles(r, np.array([249, 299]), [0.5], window=250)
    assert hs[:, 0] == pytest.approx([np.median(r[:250]), np.median(r[50:300])])


# -- a tiny stocks run --------------------------------------------------------------------------------------
def test_tiny_stocks_run_with_a_quantile_head(project, capsys):
    two_entities().to_csv("prices.csv", index=False)
    args = [*SMALL, "--set", "stocks.model.distribution=quantile", "--set", "stocks.train.epochs=2",
            "--set", "stocks.evaluate.bootstrap=100"]
    stages(capsys, "stocks", args, ["ingest", "validate", "window", "train", "baselines", "evaluate"])
    reports = Path("data/reports/stocks")
    full = json.loads((reports / "metrics.json").read_text())
    m = full["model"]
    assert m["crps"] > 0 and set(m["coverage"]) == {"0.5", "0.8", "0.9", "0.98"}
    assert set(m["pinball"]) == {f"{t:g}" for t in LEVELS} and m["conformal"]["fitted_on"] == "validation"
    assert set(m["var_backtests"]) == {"0.01", "0.05"} and "p_value_cc" in m["var_backtests"]["0.01"]
    assert set(full["distribution_baselines"]) == {"garch_t", "gjr_garch_t", "ewma_normal", "empirical",
                                                   "historical_simulation"}
    pairs = {(c["b"], c["metric"]) for c in full["comparisons"] if c["a"] == "model"}
    assert {(b, m) for b in full["distribution_baselines"] for m in ("crps", "pinball_0.01", "pinball_0.05")} <= pairs
    assert set(m["aci"]["coverage"]) == {"0.5", "0.8", "0.9", "0.98"} and m["aci"]["state"]["0.9"]["gamma"] == 0.005
    report = (reports / "report.md").read_text()
    assert "## Forecast distribution" in report and "| GJR-GARCH(1,1)-t |" in report
    assert "| model (adaptive conformal) |" in report
    for png in ("pit.png", "fan.png"):
        assert (reports / "plots" / png).read_bytes()[:4] == b"\x89PNG"
    fan = pd.read_csv(reports / "plots" / "fan.csv")
    assert list(fan.columns) == ["date", "actual", *[f"q{t:g}" for t in LEVELS]] and len(fan) == m["n"]
    # monitor: the deployed (latest) model's coverage signal is part of its verdict
    from r2n2.ops.monitoring import monitor_case
    from r2n2.registry import get_case, load_params

    params = load_params("params.yaml", overrides=[a for a in args if a != "--set"])
    out = monitor_case(get_case("stocks"), params.cases["stocks"])
    assert out["signals"]["coverage"]["test"] == "bernoulli cusum of VaR exceedances"
    from flows.cli import main

    assert main(["predict", "stocks", "--input", "prices.csv", "--output", "pred.csv", *predict_sets(args),
                 "--model", "data/models/stocks/model.pt"]) == 0
    pred = pd.read_csv("pred.csv")
    qs = pred[[f"q{t:g}" for t in LEVELS]].to_numpy()
    assert (np.diff(qs, axis=1) >= 0).all() and len(pred) > 0  # every level, never crossing


# -- adaptive conformal, risk-desk baselines, tick-loss tests --------------------------------------------
def test_adaptive_conformal_recovers_coverage_after_a_planted_volatility_break():
    """A forecast of N(0, 1) quantiles, right for 1,000 days, then the volatility quadruples: the split-conformal
    (fixed) 90 % interval covers ~41 % afterwards, adaptive conformal gets back to 90 % (the last 1,500 days,
    within 4 binomial sd plus the drift of its gamma), while on the calm first half both hold 90 %."""
    from r2n2.evaluate.distribution import adaptive_conformal

    rng = np.random.default_rng(3)
    y_val = rng.normal(size=500)
    y = np.concatenate([rng.normal(size=1000), 4 * rng.normal(size=3000)])
    q_unit = np.tile(st.norm.ppf(LEVELS), (len(y), 1))
    q_val = np.tile(st.norm.ppf(LEVELS), (500, 1))
    fixed = apply_offsets(q_unit, conformal_offsets(q_val, y_val, LEVELS), LEVELS)
    aci, state = adaptive_conformal(q_unit, y, LEVELS, q_val, y_val, gamma=0.005)
    calm, late = slice(0, 1000), slice(2500, None)
    cov = {name: {part: coverage_table(y[s], q[s], LEVELS)[0]["0.9"] for part, s in (("calm", calm), ("late", late))}
           for name, q in (("fixed", fixed), ("aci", aci))}
    sd = math.sqrt(0.09 / 1500)
    assert abs(cov["fixed"]["calm"] - 0.9) < 0.03 and abs(cov["aci"]["calm"] - 0.9) < 0.03
    assert cov["fixed"]["late"] < 0.5
    assert abs(cov["aci"]["late"] - 0.9) < 4 * sd + 0.01, cov
    assert (np.diff(aci, axis=1) >= 0).all()  # never crossing
    assert state["0.9"]["alpha_end"] < 0.1 < 0.9  # it had to ask for wider intervals than nominal
    # row t is a function of y up to t - 1: a change on day 2,000 moves no interval up to and including it
    y2 = y.copy()
    y2[2000] = 1e6
    moved = adaptive_conformal(q_unit, y2, LEVELS, q_val, y_val)[0]
    assert np.array_equal(moved[:2001], aci[:2001]) and not np.array_equal(moved[2001:], aci[2001:])


def test_ewma_normal_equals_arch_riskmetrics():
    """The EWMA-normal baseline's variance is arch's EWMAVariance(0.94) forecast once the start-up has decayed."""
    from arch.univariate import ZeroMean, EWMAVariance

    from r2n2.evaluate.distribution import ewma_normal_quantiles

    rng = np.random.default_rng(0)
    r = rng.standard_t(5, size=1500) * 0.01
    ends = np.arange(600, 1400)
    q = ewma_normal_quantiles(r, ends, LEVELS)
    res = ZeroMean(r * 100, volatility=EWMAVariance(0.94)).fit(disp="off")
    var = res.forecast(horizon=1, start=600, reindex=False).variance.to_numpy()[:800, 0] / 1e4
    assert np.allclose(q[:, LEVELS.index(0.05)], np.sqrt(var) * st.norm.ppf(0.05), rtol=1e-6)


@pytest.mark.parametrize("o", [0, 1])
def test_garch_baselines_see_only_returns_known_at_each_origin(o):
    """Refitted every 21 origins on an expanding window: rewriting every return after origin k moves no quantile
    of rows up to k (GARCH-t and GJR-GARCH-t)."""
    from r2n2.evaluate.distribution import garch_family_quantiles

    rng = np.random.default_rng(1)
    r = rng.standard_t(5, size=900) * 0.01
    ends = np.arange(700, 760)
    q = garch_family_quantiles(r, ends, LEVELS, o=o)
    k = 30  # inside the second block
    r2 = r.copy()
    r2[ends[k] + 1:] *= 5
    q2 = garch_family_quantiles(r2, ends, LEVELS, o=o)
    assert np.array_equal(q[:k + 1], q2[:k + 1])
    assert not np.allclose(q[k + 1:], q2[k + 1:])
    assert (np.diff(q, axis=1) > 0).all()


def test_pinball_comparison_prefers_the_true_quantile():
    """Diebold–Mariano on the 5 % tick loss: the true 5 % quantile beats one set too high; a forecast against
    itself is a zero difference."""
    from r2n2.evaluate.distribution import pinball_comparison

    rng = np.random.default_rng(2)
    y = rng.normal(size=3000)
    good = np.tile(st.norm.ppf(LEVELS), (3000, 1))
    bad = good + 0.5
    c = pinball_comparison(y, good, bad, LEVELS, 0.05, a="good", b="bad")
    assert c["metric"] == "pinball_0.05" and c["diff"] < 0 and c["ci_high"] < 0 and c["p_value"] < 0.001
    u = y - good[:, 1]
    hand = np.mean(np.maximum(0.05 * u, -0.95 * u)) - np.mean(np.maximum(0.05 * (u - 0.5), -0.95 * (u - 0.5)))
    assert c["diff"] == pytest.approx(hand)
