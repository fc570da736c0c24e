"""Synthetic price data with structure planted at a chosen strength: the positive controls of the library.

A real result that ties its baseline says either "there is nothing to learn here" or "the model cannot learn
this" or "the test could not have seen it". These generators tell the three apart: each plants one kind of
structure, graded by ``beta`` (0 = none), into files that the cases read like any user's data, so the planted
effect goes through the real stages (ingest, validate, window, train, evaluate).

- :func:`lead_lag_panel`: followers' next-day returns load ``beta`` on one leader's return today. Only a model
  that relates the stocks to each other (and knows which one leads) can use it.
- :func:`similar_partner_panel`: each stock's next-day return loads ``beta`` on today's return of the stock whose
  last 20 days correlate most with its own: a relation by content, no identity needed.
- :func:`shared_ar_pair`: two series (``src``, ``tgt``) whose next-day returns follow the same AR(1) rule: what a
  model pretrained on one can carry to the other (transfer with little target data).
- :func:`one_to_many_panel`: several leaders, each leading several followers, under a market factor, the roles
  given to shuffled names: the lead-lag of :func:`lead_lag_panel` in a shape closer to a real cross-section.
- Placebos, where nothing can be learnt: :func:`market_noise_panel` (a common market factor and noise, no lead)
  and :func:`shuffle_dates_across_stocks` (any panel with each stock's returns moved by its own random number of
  days, which keeps every stock's own series and breaks every relation between stocks).
- :func:`analogue_series`: tomorrow's return loads ``beta`` on the return that followed the past day most
  similar to today (by the opening gap): a relation between two time steps, what the slides' module relates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["lead_lag_panel", "lead_lag_share", "analogue_series", "shared_ar_pair", "similar_partner_panel",
           "market_noise_panel", "shuffle_dates_across_stocks", "one_to_many_panel", "one_to_many_roles",
           "one_to_many_share"]


def lead_lag_panel(*, beta: float = 0.4, n_stocks: int = 10, n_followers: int = 5, start: str = "2004-01-02",
                   end: str = "2015-12-31", vol: float = 0.012, dof: float = 5.0, seed: int = 0) -> pd.DataFrame:
    """A long price panel (date, entity, close): ``n_stocks`` stocks ``s00``, ``s01``, ... with t(``dof``)
    daily log returns of standard deviation ``vol``; the first ``n_followers`` after the leader ``s00``
    (``s01``..) have next-day returns ``beta * r_s00(t) + e(t+1)``, scaled so every stock keeps ``vol``.

    The leader's return today then explains a share ``beta^2 / (1 + beta^2)`` of each follower's next-day
    variance (:func:`lead_lag_share`); the other stocks are independent and unpredictable.
    """
    if not 1 <= n_followers < n_stocks:
        raise ValueError(f"lead_lag_panel: n_followers must be in [1, n_stocks), got {n_followers} of {n_stocks}.")
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, end)
    n = len(dates)
    shocks = rng.standard_t(dof, size=(n, n_stocks)) / np.sqrt(dof / (dof - 2))  # (T, N), unit variance
    returns = shocks.copy()
    followers = slice(1, 1 + n_followers)
    returns[1:, followers] = (beta * shocks[:-1, :1] + shocks[1:, followers]) / np.sqrt(1 + beta ** 2)
    close = 50 * np.exp(np.cumsum(vol * returns, axis=0))  # (T, N)
    names = [f"s{i:02d}" for i in range(n_stocks)]
    wide = pd.DataFrame(close, index=pd.Index(dates.strftime("%Y-%m-%d"), name="date"), columns=names)
    return wide.reset_index().melt(id_vars="date", var_name="entity", value_name="close")


def lead_lag_share(beta: float) -> float:
    """The share of a follower's next-day return variance that the leader's return today explains."""
    return beta ** 2 / (1 + beta ** 2)


def analogue_series(*, beta: float = 0.4, lookback: int = 30, start: str = "2004-01-02", end: str = "2015-12-31",
                    vol: float = 0.012, gap_vol: float = 0.004, dof: float = 5.0, seed: int = 0) -> pd.DataFrame:
    """Daily OHLCV (Date, Open, High, Low, Close, Volume) of one series whose next-day close-to-close return is
    ``beta * r[j* + 1] + sqrt(1 - beta^2) * e``, where ``j*`` is the day among the previous ``lookback - 2`` whose
    opening gap (log Open / previous Close, iid normal of sd ``gap_vol``) is nearest today's: "what followed the
    most similar day". Returns are t(``dof``) of sd ``vol``; High/Low bracket Open and Close; Volume is noise.
    Only a model that compares today with each past day of its window can use the rule.
    """
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, end)
    n = len(dates)
    gap = rng.normal(0.0, gap_vol, n)
    e = rng.standard_t(dof, n) / np.sqrt(dof / (dof - 2))
    r = e.copy()  # unit-variance close-to-close returns
    span = lookback - 2  # j* and j* + 1 both inside the window that ends today
    for t in range(span + 1, n - 1):
        past = np.arange(t - span, t)  # candidate days j < t; j + 1 <= t is already known today
        j = past[np.argmin(np.abs(gap[past] - gap[t]))]
        r[t + 1] = beta * r[j + 1] + np.sqrt(1 - beta ** 2) * e[t + 1]
    close = 50 * np.exp(np.cumsum(vol * r))
    prev = np.concatenate([[50.0], close[:-1]])
    open_ = prev * np.exp(gap)
    wick = np.exp(np.abs(rng.normal(0.0, 0.003, (2, n))))
    return pd.DataFrame({"Date": dates.strftime("%Y-%m-%d"), "Open": open_,
                         "High": np.maximum(open_, close) * wick[0], "Low": np.minimum(open_, close) / wick[1],
                         "Close": close, "Volume": rng.integers(1_000_000, 2_000_000, n)})


def shared_ar_pair(*, beta: float = 0.3, start: str = "2004-01-02", end: str = "2015-12-31", vol: float = 0.012,
                   dof: float = 5.0, seed: int = 0) -> pd.DataFrame:
    """Daily OHLCV of two independent series ``src`` and ``tgt`` (columns Entity, Date, Open, High, Low, Close,
    Volume) with the same rule ``r[t+1] = beta * r[t] + sqrt(1 - beta^2) * e[t+1]`` on t(``dof``) shocks of sd
    ``vol``: today's return explains a share ``beta^2`` of tomorrow's variance in both."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, end)
    frames = []
    for name in ("src", "tgt"):
        e = rng.standard_t(dof, len(dates)) / np.sqrt(dof / (dof - 2))
        r = e.copy()
        for t in range(1, len(dates)):
            r[t] = beta * r[t - 1] + np.sqrt(1 - beta ** 2) * e[t]
        close = 50 * np.exp(np.cumsum(vol * r))
        open_ = np.concatenate([[50.0], close[:-1]]) * np.exp(rng.normal(0.0, 0.002, len(dates)))
        wick = np.exp(np.abs(rng.normal(0.0, 0.003, (2, len(dates)))))
        frames.append(pd.DataFrame({"Entity": name, "Date": dates.strftime("%Y-%m-%d"), "Open": open_,
                                    "High": np.maximum(open_, close) * wick[0],
                                    "Low": np.minimum(open_, close) / wick[1], "Close": close,
                                    "Volume": rng.integers(1_000_000, 2_000_000, len(dates))}))
    return pd.concat(frames, ignore_index=True)


def similar_partner_panel(*, beta: float = 0.4, n_stocks: int = 10, window: int = 20, start: str = "2004-01-02",
                          end: str = "2015-12-31", vol: float = 0.012, dof: float = 5.0, factors: int = 3,
                          seed: int = 0) -> pd.DataFrame:
    """A long price panel (date, entity, close) where each stock's next-day return is
    ``beta * r_j(t) + sqrt(1 - beta^2) * e_i(t+1)``, ``j`` the other stock whose returns over the last ``window``
    days correlate most with its own. Shocks mix ``factors`` slowly rotating common factors with t(``dof``)
    noise, so partners exist and change over time; which stock is a partner is read from the data, not a name."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, end)
    n = len(dates)
    t_noise = rng.standard_t(dof, size=(n, n_stocks)) / np.sqrt(dof / (dof - 2))
    f = rng.standard_normal((n, factors))
    loadings = np.cumsum(rng.normal(0, 0.05, (n, n_stocks, factors)), axis=0) + rng.normal(0, 1, (n_stocks, factors))
    common = np.einsum("tk,tnk->tn", f, loadings) / np.sqrt((loadings ** 2).sum(-1))  # (T, N), unit variance
    e = (common + t_noise) / np.sqrt(2.0)
    r = e.copy()
    for t in range(window, n - 1):
        c = np.corrcoef(r[t - window + 1:t + 1].T)  # (N, N) over the last `window` days, today included
        np.fill_diagonal(c, -np.inf)
        partner = c.argmax(axis=1)  # (N,)
        r[t + 1] = beta * r[t, partner] + np.sqrt(1 - beta ** 2) * e[t + 1]
    close = 50 * np.exp(np.cumsum(vol * r, axis=0))
    names = [f"s{i:02d}" for i in range(n_stocks)]
    wide = pd.DataFrame(close, index=pd.Index(dates.strftime("%Y-%m-%d"), name="date"), columns=names)
    return wide.reset_index().melt(id_vars="date", var_name="entity", value_name="close")


def market_noise_panel(*, n_stocks: int = 10, market: float = 0.6, start: str = "2004-01-02", end: str = "2015-12-31",
                       vol: float = 0.012, dof: float = 5.0, seed: int = 0) -> pd.DataFrame:
    """A placebo panel (date, entity, close): each stock's daily log return is ``market * m(t) + sqrt(1 -
    market^2) * e_i(t)``, one t(``dof``) market shock shared by every stock and its own t noise, of standard
    deviation ``vol``. Stocks move together (a market factor share ``market^2`` of each one's variance) but no
    return predicts any next-day return, own or other: a model that claims a rank IC here claims noise."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, end)
    scale = np.sqrt(dof / (dof - 2))
    m = rng.standard_t(dof, size=(len(dates), 1)) / scale
    e = rng.standard_t(dof, size=(len(dates), n_stocks)) / scale
    close = 50 * np.exp(np.cumsum(vol * (market * m + np.sqrt(1 - market ** 2) * e), axis=0))  # (T, N)
    names = [f"s{i:02d}" for i in range(n_stocks)]
    wide = pd.DataFrame(close, index=pd.Index(dates.strftime("%Y-%m-%d"), name="date"), columns=names)
    return wide.reset_index().melt(id_vars="date", var_name="entity", value_name="close")


def shuffle_dates_across_stocks(panel: pd.DataFrame, *, seed: int = 0, min_gap: int = 63) -> pd.DataFrame:
    """A placebo of a long price panel (date, entity, close): each stock's daily log returns are rotated in time
    by its own random offset (at least 250 days from 0 and from the series' length, and ``min_gap`` days from every
    other stock's, so no two stocks keep a lead shorter than that), then cumulated again from its first close. Every stock keeps its own return series, its volatility clustering
    included, and the dates stay; what any stock's return says about another's next day is gone."""
    rng = np.random.default_rng(seed)
    wide = panel.pivot(index="date", columns="entity", values="close").sort_index()
    r = np.log(wide).diff().iloc[1:].to_numpy()  # (T - 1, N)
    n = len(r)
    if n < 1000:
        raise ValueError(f"shuffle_dates_across_stocks: needs at least 1,001 dates, got {n + 1}.")
    while True:  # offsets at least `min_gap` days apart (circularly): two stocks that share a shock (followers of
        # one leader) whose offsets differ by d < lookback would keep a d-day lead-lag between them
        offsets = rng.choice(np.arange(250, n - 250), size=r.shape[1], replace=False)
        gaps = np.abs(offsets[:, None] - offsets[None, :])
        gaps = np.minimum(gaps, n - gaps)[~np.eye(len(offsets), dtype=bool)]
        if gaps.min() >= min_gap:
            break
    rotated = np.stack([np.roll(r[:, j], int(k)) for j, k in enumerate(offsets)], axis=1)
    close = wide.iloc[0].to_numpy() * np.exp(np.vstack([np.zeros(r.shape[1]), np.cumsum(rotated, axis=0)]))
    out = pd.DataFrame(close, index=wide.index, columns=wide.columns)
    return out.reset_index().melt(id_vars="date", var_name="entity", value_name="close")


def one_to_many_roles(*, n_stocks: int = 10, leaders: int = 2, followers: int = 3, seed: int = 0) -> dict[str, str]:
    """``{follower: its leader}`` of :func:`one_to_many_panel` with the same arguments: the roles go to names
    drawn at random, so no name (s00, ...) says who leads."""
    if leaders * (1 + followers) > n_stocks:
        raise ValueError(f"one_to_many_panel: {leaders} leaders with {followers} followers each need "
                         f"{leaders * (1 + followers)} stocks, got {n_stocks}.")
    names = np.random.default_rng([seed, 7]).permutation([f"s{i:02d}" for i in range(n_stocks)])
    return {str(names[leaders + k * followers + j]): str(names[k]) for k in range(leaders) for j in range(followers)}


def one_to_many_share(beta: float, market: float = 0.5) -> float:
    """The share of a follower's next-day return variance that its leader's return today explains."""
    return (1 - market ** 2) * beta ** 2 / (1 + beta ** 2)


def one_to_many_panel(*, beta: float = 0.3, n_stocks: int = 10, leaders: int = 2, followers: int = 3,
                      market: float = 0.5, start: str = "2004-01-02", end: str = "2015-12-31", vol: float = 0.012,
                      dof: float = 5.0, seed: int = 0) -> pd.DataFrame:
    """A long price panel (date, entity, close): every stock's return is ``market * m(t) + sqrt(1 - market^2) *
    u_i(t)``, one t(``dof``) market shock shared by all; a follower's own part is ``u_f(t+1) = (beta * r_l(t) +
    e_f(t+1)) / sqrt(1 + beta^2)``, ``r_l`` its leader's whole standardised return today (market included). Roles
    (``one_to_many_roles``): ``leaders`` leaders, each leading ``followers`` followers, on shuffled names; the
    other stocks are independent. A leader explains ``one_to_many_share(beta, market)`` of a follower's variance;
    the other leader, through the market factor both carry, about ``market^2`` times as much correlation."""
    roles = one_to_many_roles(n_stocks=n_stocks, leaders=leaders, followers=followers, seed=seed)
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, end)
    n, scale = len(dates), np.sqrt(dof / (dof - 2))
    names = [f"s{i:02d}" for i in range(n_stocks)]
    m = rng.standard_t(dof, size=n) / scale
    u = rng.standard_t(dof, size=(n, n_stocks)) / scale  # (T, N) own shocks
    r = market * m[:, None] + np.sqrt(1 - market ** 2) * u  # leaders and the independent stocks
    col = {name: i for i, name in enumerate(names)}
    for follower, leader in roles.items():  # leaders' returns are final before any follower reads them
        f, lead = col[follower], col[leader]
        own = (beta * np.concatenate([[0.0], r[:-1, lead]]) + u[:, f]) / np.sqrt(1 + beta ** 2)
        r[:, f] = market * m + np.sqrt(1 - market ** 2) * own
    close = 50 * np.exp(np.cumsum(vol * r, axis=0))
    wide = pd.DataFrame(close, index=pd.Index(dates.strftime("%Y-%m-%d"), name="date"), columns=names)
    return wide.reset_index().melt(id_vars="date", var_name="entity", value_name="close")
