"""Tuned text baselines, VADER, panel baseline scores and the near-duplicate text key."""

import numpy as np
import pandas as pd
import pytest

from r2n2.data.textkey import near_duplicate_key, near_duplicate_keys
from r2n2.errors import DataError
from r2n2.evaluate import baselines as B


# ---- TF-IDF + logistic regression, tuned on validation --------------------------------------------------------

def _order_corpus(seed, n):
    """Label 1 iff "alpha beta" appears in that order: unigrams alone cannot tell the classes apart."""
    rng = np.random.default_rng(seed)
    filler = ["gamma", "delta", "eps", "zeta", "eta", "theta"]
    texts, y = [], []
    for i in range(n):
        pair = "alpha beta" if i % 2 else "beta alpha"
        words = list(rng.choice(filler, 3))
        words.insert(int(rng.integers(0, 4)), pair)
        texts.append(" ".join(words))
        y.append(i % 2)
    return texts, np.array(y)


def test_tuned_tfidf_finds_the_planted_bigram_on_validation_and_is_deterministic():
    xtr, ytr = _order_corpus(0, 80)
    xva, yva = _order_corpus(1, 40)
    pipe, params = B.tune_tfidf_logreg(xtr, ytr, xva, yva, grid={"C": (1.0, 4.0), "ngram_range": ((1, 1), (1, 2))})
    assert params["ngram_range"] == [1, 2] and params["val_macro_f1"] == 1.0
    assert params["C"] == 1.0  # ties on validation go to the first grid value
    xte, yte = _order_corpus(2, 20)
    assert (pipe.predict(xte) == yte).all()
    again = B.tune_tfidf_logreg(xtr, ytr, xva, yva, grid={"C": (1.0, 4.0), "ngram_range": ((1, 1), (1, 2))})[1]
    assert again == params


def test_tfidf_fits_side_by_side_equal_one_by_one_in_job_order():
    """Two worker processes give the choices, scores and probabilities of one process, in the order asked."""
    jobs = [(*_order_corpus(0, 40), *_order_corpus(1, 30)), (*_order_corpus(2, 120), *_order_corpus(3, 30))]
    alone = B.tune_tfidf_many(jobs, n_jobs=1)
    side_by_side = B.tune_tfidf_many(jobs, n_jobs=2)  # the larger second job is scheduled first
    xte = _order_corpus(4, 20)[0]
    for (p1, s1), (p2, s2) in zip(alone, side_by_side):
        assert s1 == s2
        # a swap would differ at 1e-2; 1e-16 differences remain when this test process's OpenBLAS kernel is not the
        # workers' (r2n2's CLI pins OPENBLAS_CORETYPE before numpy loads; a test that imported it set it too late)
        np.testing.assert_allclose(p1.predict_proba(xte), p2.predict_proba(xte), rtol=1e-12, atol=0)
    assert not np.array_equal(alone[0][0].predict_proba(xte), alone[1][0].predict_proba(xte))


def test_tuned_tfidf_choice_equals_the_best_fixed_baseline_on_validation():
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(3)
    vocab = np.array(["good", "great", "bad", "awful", "fine", "meh", "ok", "stock", "up", "down"])
    def corpus(n):  # noqa: E306
        y = rng.integers(0, 3, n)
        cue = np.array([["bad", "awful"], ["meh", "ok"], ["good", "great"]])
        texts = [" ".join([cue[c][rng.integers(0, 2)] if rng.random() < 0.6 else rng.choice(vocab)]
                          + list(rng.choice(vocab, 4))) for c in y]
        return texts, y
    (xtr, ytr), (xva, yva) = corpus(120), corpus(60)
    grid = {"C": (0.25, 4.0), "ngram_range": ((1, 1), (1, 2))}
    _, params = B.tune_tfidf_logreg(xtr, ytr, xva, yva, grid=grid)
    scores = {(c, ng): f1_score(yva, B.tfidf_logreg_baseline(xtr, ytr, xva, C=c, ngram_range=ng), average="macro")
              for ng in grid["ngram_range"] for c in grid["C"]}
    assert params["val_macro_f1"] == pytest.approx(max(scores.values()))
    assert scores[(params["C"], tuple(params["ngram_range"]))] == pytest.approx(max(scores.values()))


def test_existing_text_baselines_still_work():
    xtr, ytr = _order_corpus(0, 40)
    assert B.majority_baseline(np.array([2, 2, 1]), 3).tolist() == [2, 2, 2]
    assert len(B.tfidf_logreg_baseline(xtr, ytr, xtr[:5])) == 5


# ---- VADER ----------------------------------------------------------------------------------------------------

def test_vader_compound_and_class_mapping():
    c = B.vader_compound(["I love this, it is great!", "This is terrible and awful.", "the table"])
    assert c[0] > 0.5 and c[1] < -0.5 and c[2] == 0.0
    assert B.vader_classes([-0.5, -0.05, 0.0, 0.05, 0.5], low=-0.05, high=0.05).tolist() == [0, 1, 1, 1, 2]


def test_vader_thresholds_are_chosen_on_validation():
    comp = np.array([-0.8, -0.6, -0.1, 0.0, 0.1, 0.7, 0.9])
    y = np.array([0, 0, 1, 1, 1, 2, 2])
    # any -0.6 < low <= -0.1 and 0.1 <= high < 0.7 is perfect; the first on the grid: low=-0.55, high=0.1
    assert B.tune_vader_thresholds(comp, y) == {"low": -0.55, "high": 0.1, "val_macro_f1": 1.0}
    shifted = B.tune_vader_thresholds(comp + 0.5, y)  # a shifted lexicon: the thresholds follow
    assert shifted["val_macro_f1"] == 1.0 and shifted["low"] == pytest.approx(-0.05)


# ---- panel baselines ------------------------------------------------------------------------------------------

def _close():
    d = pd.bdate_range("2020-01-01", periods=6)
    return pd.DataFrame({"A": [1.0, 2.0, 2.0, 4.0, 4.0, 8.0], "B": [1.0, 1.0, 0.5, 0.5, 1.0, 1.0]}, index=d)


def test_reversal_scores_hand_computed():
    c = _close()
    r1 = B.reversal_scores(c, days=1)
    assert np.isnan(r1.iloc[0]).all()
    assert r1["A"].iloc[1:].tolist() == pytest.approx(-np.log([2, 1, 2, 1, 2]))
    r5 = B.reversal_scores(c, days=5)
    assert r5.iloc[5].tolist() == pytest.approx([-np.log(8), 0.0]) and r5.iloc[:5].isna().all().all()
    with pytest.raises(DataError, match="positive closing prices; non-positive values in \\['B'\\]"):
        B.reversal_scores(c.assign(B=0.0))


def test_momentum_skips_the_most_recent_days():
    m = B.momentum_scores(_close(), lookback=4, skip=1)
    # row 5: log(P_4 / P_1) = log(4 / 2) for A, log(1 / 1) for B; the jump of the last day is skipped
    assert m.iloc[5].tolist() == pytest.approx([np.log(2), 0.0])
    assert m.iloc[4].tolist() == pytest.approx([np.log(4), np.log(0.5)])
    assert m.iloc[:4].isna().all().all()
    with pytest.raises(DataError, match="skip < lookback"):
        B.momentum_scores(_close(), lookback=5, skip=5)


def test_equal_weight_buy_and_hold_hand_computed():
    c = _close().iloc[:3].assign(C=[np.nan, 5.0, 5.0])  # C has no price on day 0: not bought
    r = B.equal_weight_returns(c)
    # value: mean(P_t / P_0) = 1, (2 + 1) / 2 = 1.5, (2 + 0.5) / 2 = 1.25
    assert r.tolist() == pytest.approx([0.5, 1.25 / 1.5 - 1])
    assert r.index.tolist() == c.index[1:].tolist()


# ---- near-duplicate key ---------------------------------------------------------------------------------------

PLANTED = [
    "Loving the new #iPhone! http://t.co/abc123",
    "RT @bob: Loving the new #iPhone! http://t.co/xyz789",
    "RT @alice: RT @bob: loving the new #iphone!!! https://t.co/q",
    "@apple loving the new iPhone",
    "Loving   the new iPhone... www.apple.com/iphone @tim_cook",
    "loving the new iphone http://t.co/…",
]


def test_planted_retweet_url_and_mention_variants_share_one_key():
    keys = {near_duplicate_key(t) for t in PLANTED}
    assert keys == {"loving the new iphone"}
    assert near_duplicate_keys(pd.Series(PLANTED)).nunique() == 1


def test_different_texts_keep_different_keys():
    texts = ["Loving the new iPhone", "Hating the new iPhone", "Loving the old iPhone", "rtx 4090 is fast",
             "RT is not a retweet here", "start @ 9am"]
    keys = [near_duplicate_key(t) for t in texts]
    assert len(set(keys)) == len(texts)
    assert keys[3] == "rtx 4090 is fast"  # "rtx" is not a retweet marker
    assert near_duplicate_key("http://t.co/a @bob") == "http://t.co/a @bob"  # nothing left: keep the text


def test_vectorised_keys_equal_the_scalar_key():
    texts = pd.Series(PLANTED + ["Héllo, Wörld! ça va?", "", None, "#AAPL up 3% @ $150"], index=range(10, 20))
    keys = near_duplicate_keys(texts)
    assert keys.index.tolist() == list(range(10, 20))
    assert keys.tolist() == [near_duplicate_key(t) for t in texts]
    assert keys.iloc[6] == "héllo wörld ça va"


def test_garch_volatility_rises_after_a_planted_burst():
    rng = np.random.default_rng(0)
    r, var = np.zeros(700), 1.0  # a GARCH(1,1) path in percent: 0.05 + 0.1 r^2 + 0.85 var
    for t in range(700):
        r[t] = rng.standard_normal() * np.sqrt(var)
        var = 0.05 + 0.1 * r[t] ** 2 + 0.85 * var
    r[600:620] = rng.standard_normal(20) * 5  # a volatility burst inside the test period
    r /= 100
    ends = np.array([590, 625])
    vol = B.garch_volatility(r, 500, ends, horizon=5)
    assert vol.shape == (2,) and (vol > 0).all()
    assert vol[1] > 1.5 * vol[0]
