"""Baselines fitted on the same splits as the models: random walk, historical mean, GARCH(1,1) (arch),
majority class and TF-IDF + logistic regression (scikit-learn)."""

from __future__ import annotations

import numpy as np

__all__ = ["garch_volatility", "majority_baseline", "tfidf_logreg_baseline"]


def garch_volatility(returns: np.ndarray, train_end: int, ends: np.ndarray, horizon: int) -> np.ndarray:
    """GARCH(1,1) fitted on daily log returns up to ``train_end`` (exclusive); for each window end t the
    forecast root-mean variance over the next ``horizon`` days, using information up to t only."""
    from arch import arch_model

    r = np.asarray(returns, float) * 100  # percent returns: better conditioned optimisation
    am = arch_model(r, mean="Constant", vol="GARCH", p=1, q=1, dist="normal")
    res = am.fit(last_obs=train_end, disp="off")
    fc = res.forecast(horizon=horizon, start=int(min(ends)), reindex=False)
    var = fc.variance.to_numpy()  # (rows from start, horizon)
    rows = np.asarray(ends) - int(min(ends))
    return np.sqrt(var[rows].mean(axis=1)) / 100


def majority_baseline(train_y: np.ndarray, n: int) -> np.ndarray:
    from sklearn.dummy import DummyClassifier

    clf = DummyClassifier(strategy="most_frequent").fit(np.zeros((len(train_y), 1)), train_y)
    return clf.predict(np.zeros((n, 1)))


def tfidf_logreg_baseline(train_texts, train_y, test_texts, *, seed: int = 0) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    pipe = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
                         LogisticRegression(max_iter=2000, C=2.0, class_weight="balanced", random_state=seed))
    pipe.fit(list(train_texts), np.asarray(train_y))
    return pipe.predict(list(test_texts))
