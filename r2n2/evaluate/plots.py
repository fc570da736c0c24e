"""PNG plots (matplotlib's object API: no pyplot, nothing blocks) and the CSV/JSON data DVC plots read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..io import write_text_atomic, write_with

__all__ = ["save_figure", "write_csv", "plot_lines", "plot_forecast", "plot_cumulative", "plot_confusion",
           "plot_learning_curves", "plot_pit", "plot_fan", "date_axis"]


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # no software version or date inside the PNG: equal plots give equal bytes (DVC hashes them)
    return write_with(lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight",
                                              metadata={"Software": None}), path)


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    return write_text_atomic(df.to_csv(index=False), path)


def _figure(w=10, h=4.5):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    return fig, fig.subplots()


def date_axis(ax, x) -> None:
    """Date ticks that never run into each other at any span (matplotlib's concise date formatter: years once,
    then months or days); a numeric x is left alone."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    if np.issubdtype(np.asarray(x).dtype, np.number):
        return
    locator = AutoDateLocator(minticks=4, maxticks=9)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def plot_forecast(dates, actual, predicted, path, *, title: str, ylabel: str = "next-day log return") -> Path:
    fig, ax = _figure()
    ax.plot(pd.to_datetime(dates), actual, lw=0.7, color="0.55", label="actual")
    ax.plot(pd.to_datetime(dates), predicted, lw=1.1, color="C1", label="forecast")
    ax.axhline(0, color="k", lw=0.5)
    ax.set(title=title, ylabel=ylabel)
    date_axis(ax, pd.to_datetime(dates))
    ax.legend(loc="upper left")
    return save_figure(fig, path)


def plot_cumulative(dates, actual, predicted, path, *, title: str) -> Path:
    """Cumulative log return of trading the forecast's sign vs buy-and-hold (no costs)."""
    fig, ax = _figure()
    d = pd.to_datetime(dates)
    ax.plot(d, np.cumsum(actual), label="buy and hold", color="0.4")
    ax.plot(d, np.cumsum(np.sign(predicted) * actual), label="sign of forecast", color="C0")
    ax.set(title=title, ylabel="cumulative log return")
    date_axis(ax, d)
    ax.legend(loc="upper left")
    return save_figure(fig, path)


def plot_confusion(cm, labels, path, *, title: str) -> Path:
    fig, ax = _figure(5.5, 4.5)
    cm = np.asarray(cm)
    im = ax.imshow(cm, cmap="Blues")
    fig.colorbar(im, ax=ax)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set(title=title, xlabel="predicted", ylabel="actual")
    return save_figure(fig, path)


def plot_learning_curves(histories: dict[str, list[dict]], path, *, title: str) -> Path:
    fig, ax = _figure(8, 4.5)
    for name, hist in histories.items():
        if not hist:
            continue
        epochs = [r["epoch"] for r in hist]
        ax.plot(epochs, [r["train_loss"] for r in hist], "--", label=f"{name} train")
        ax.plot(epochs, [r["val_loss"] for r in hist], "-", label=f"{name} validation")
    from matplotlib.ticker import MaxNLocator

    ax.set(title=title, xlabel="epoch", ylabel="loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3, frameon=False, fontsize=8)  # off the lines
    return save_figure(fig, path)


def plot_lines(x, series: dict[str, np.ndarray], path, *, title: str, ylabel: str, xlabel: str = "") -> Path:
    """Several named series over one x axis (dates or steps)."""
    fig, ax = _figure()
    xs = pd.to_datetime(x) if not np.issubdtype(np.asarray(x).dtype, np.number) else x
    for name, y in series.items():
        ax.plot(xs, y, lw=1.1, label=name)
    ax.axhline(0, color="k", lw=0.5)
    ax.set(title=title, ylabel=ylabel, xlabel=xlabel)
    date_axis(ax, xs)
    ax.legend(loc="upper left")
    return save_figure(fig, path)


def plot_pit(frame: pd.DataFrame, path, *, title: str) -> Path:
    """PIT histograms on a quantile grid (``frame``: forecast, bin_low, bin_high, observed, expected): each bin's
    observed share over the share a calibrated forecast puts there (1 = calibrated), bins drawn at their width."""
    fig, ax = _figure()
    names = list(dict.fromkeys(frame["forecast"]))
    for k, name in enumerate(names):
        f = frame[frame["forecast"] == name]
        width = (f["bin_high"] - f["bin_low"]).to_numpy()
        ax.bar(f["bin_low"] + width * k / len(names), f["observed"] / f["expected"], width=width / len(names),
               align="edge", color=f"C{k}", alpha=0.8, label=name)
    ax.axhline(1, color="k", lw=0.7)
    ax.set(title=title, xlabel="forecast level (PIT)", ylabel="observed / expected share")
    ax.legend(loc="upper center")
    return save_figure(fig, path)


def plot_fan(frame: pd.DataFrame, path, *, title: str, ylabel: str = "next-day log return") -> Path:
    """A fan chart of quantile forecasts (``frame``: date, actual, q<level> columns): the 90 % and 50 % central
    intervals as bands, the realised values, and the days below the 1 % and 5 % quantiles (VaR exceedances)
    marked; the legend sits below the axes, away from the data."""
    fig, ax = _figure(11, 5)
    d = pd.to_datetime(frame["date"])
    y = frame["actual"].to_numpy(float)
    for lo, hi, alpha, label in (("q0.05", "q0.95", 0.18, "90 % interval"), ("q0.25", "q0.75", 0.35, "50 % interval")):
        if lo in frame and hi in frame:
            ax.fill_between(d, frame[lo], frame[hi], color="C0", alpha=alpha, lw=0, label=label)
    if "q0.5" in frame:
        ax.plot(d, frame["q0.5"], color="C0", lw=0.8, label="median")
    ax.plot(d, y, color="0.3", lw=0.5, label="realised")
    for col, marker, color, label in (("q0.05", "v", "C1", "below the 5 % quantile (VaR 5 %)"),
                                      ("q0.01", "v", "C3", "below the 1 % quantile (VaR 1 %)")):
        if col in frame:
            hit = y < frame[col].to_numpy(float)
            ax.scatter(d[hit], y[hit], marker=marker, s=22, color=color, zorder=3,
                       label=f"{label}: {int(hit.sum())} of {len(y)} days")
    ax.axhline(0, color="k", lw=0.4)
    ax.set(title=title, ylabel=ylabel)
    date_axis(ax, d)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, frameon=False, fontsize=8)
    return save_figure(fig, path)
