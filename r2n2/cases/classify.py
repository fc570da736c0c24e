"""Scoring, reporting and prediction of the ``sentiment`` case. Evaluation loads checkpoints and scores them;
it never trains."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.sources import clean_text, read_user_file
from ..errors import DataError
from ..evaluate.baselines import majority_baseline, tfidf_logreg_baseline
from ..evaluate.metrics import classification_metrics
from ..evaluate.plots import plot_confusion, plot_learning_curves, write_csv
from ..evaluate.report import history, md_table
from ..io import write_json_atomic, write_text_atomic
from ..train import predict_batches

__all__ = ["evaluate_classifier", "predict_texts", "predict_file_texts", "class_predictions"]


def class_predictions(model, data, role: str, split: str):
    """(labels, predicted ids, rows in batch order) of one role/split."""
    b = data.batches(role, split, batch_size=256)
    rows = data.rows(role, split).iloc[b.order()].reset_index(drop=True)
    return b.targets(), predict_batches(model, b).argmax(1), rows


def evaluate_classifier(cfg, data, models: dict, paths, log) -> dict:
    labels = data.meta.labels
    model, model_meta = models["model"]
    y, pred, test_rows = class_predictions(model, data, "pretrain", "test")
    train_rows = data.rows("pretrain", "train")
    score = lambda p, yy=y: classification_metrics(yy, p, labels)  # noqa: E731
    metrics = {"model": score(pred), "baselines": {
        "majority": score(majority_baseline(train_rows["label_id"].to_numpy(), len(y))),
        "tfidf_logreg": score(tfidf_logreg_baseline(train_rows["text"], train_rows["label_id"],
                                                    test_rows["text"].to_numpy(), seed=cfg.train.seed))}}
    histories = {"model": history(model_meta)}
    for name, (m, m_meta) in models.get("baselines", {}).items():
        metrics["baselines"][name] = score(class_predictions(m, data, "pretrain", "test")[1])
        histories[name] = history(m_meta)
    if "finetuned" in models and "scratch" in models:
        ft, ft_meta = models["finetuned"]
        sc, sc_meta = models["scratch"]
        ty, tpred, ttest = class_predictions(ft, data, "target", "test")
        tscore = lambda p: classification_metrics(ty, p, labels)  # noqa: E731
        metrics["finetuned"] = tscore(tpred)
        metrics["scratch"] = tscore(class_predictions(sc, data, "target", "test")[1])
        ttrain = data.rows("target", "train")
        metrics["target_baselines"] = {
            "majority": tscore(majority_baseline(ttrain["label_id"].to_numpy(), len(ty))),
            "tfidf_logreg": tscore(tfidf_logreg_baseline(ttrain["text"], ttrain["label_id"],
                                                         ttest["text"].to_numpy(), seed=cfg.train.seed))}
        histories["finetuned"], histories["scratch"] = history(ft_meta), history(sc_meta)
    m, b = metrics["model"]["macro_f1"], metrics["baselines"]["tfidf_logreg"]["macro_f1"]
    metrics["tests"] = {"model_minus_tfidf_macro_f1": m - b}
    metrics["near_duplicates"] = data.meta.near_duplicates
    write_json_atomic(metrics, paths.reports / "metrics.json")

    plots = paths.reports / "plots"
    if cfg.evaluate.plots:
        plot_confusion(metrics["model"]["confusion_matrix"], labels, plots / "confusion.png",
                       title="sentiment: model confusion matrix (test)")
        write_csv(pd.DataFrame({"actual": [labels[i] for i in y], "predicted": [labels[i] for i in pred]}),
                  plots / "confusion.csv")
        write_json_atomic([{"model": k, **r} for k, h in histories.items() for r in h], plots / "learning_curves.json")
        plot_learning_curves(histories, plots / "learning_curves.png", title="sentiment: learning curves (CE loss)")
        if model.has_focus:
            _plot_focus(model, data, plots)
    write_text_atomic(_report(metrics, data), paths.reports / "report.md")
    return metrics


def _plot_focus(model, data, plots) -> None:
    from ..data.window import TextBatches
    from ..models.presets import visualize_attention

    test_b = data.batches("pretrain", "test", batch_size=256)
    order = test_b.order()  # 24 test tweets spread over the whole length range
    pick = order[np.linspace(0, len(order) - 1, 24).round().astype(int)]
    sample = TextBatches([test_b.ids[i] for i in pick], test_b.labels[pick], 24)
    x, lengths, _ = next(iter(sample.iter_epoch(0)))
    w, kind = model.focus(x, lengths)
    visualize_attention(x, w, plots / "attention.png", title=f"{kind} over tokens (24 test tweets)")


def _report(m: dict, data) -> str:
    cols = ["accuracy", "macro_f1", "macro_recall"]
    diff = m["tests"]["model_minus_tfidf_macro_f1"]
    cuts = data.meta.cuts
    verdict = (f"The model's macro-F1 is {abs(diff):.3f} {'above' if diff >= 0 else 'below'} the TF-IDF + "
               "logistic-regression baseline on the same test split.")
    nd = m["near_duplicates"]
    lines = ["# Sentiment report", "",
             f"Test split of the pretraining domain (tweets not about Apple): the newest texts, from "
             f"{data.meta.time} {cuts['test_start']} on. {nd.get('texts_in_shared_groups', 0)} texts share a "
             f"near-duplicate group; excluded from later splits: {nd.get('excluded', {})}.", "",
             md_table({"model": m["model"], **m["baselines"]}, cols), "", verdict, ""]
    if "finetuned" in m:
        lines += ["Transfer to Apple tweets (held-out Apple test set): fine-tuned vs trained from scratch on the "
                  "same Apple training data and budget:", "",
                  md_table({"finetuned": m["finetuned"], "scratch": m["scratch"], **m["target_baselines"]}, cols), ""]
    lines += ["Plots: `plots/confusion.png`, `plots/learning_curves.png`, `plots/attention.png`.", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- predict
def predict_texts(model, tokenizer_json: str, meta, texts: list[str], *, batch_size: int = 512) -> pd.DataFrame:
    """Texts -> predicted label and class probabilities, with the training tokenizer and truncation."""
    import torch
    from tokenizers import Tokenizer

    from ..data.window import TextBatches

    cleaned = [clean_text(t) for t in texts]
    empty = [i for i, t in enumerate(cleaned) if not t]
    if empty:
        raise DataError(f"{len(empty)} text(s) are empty after cleaning (rows {', '.join(map(str, empty[:10]))}"
                        f"{' ...' if len(empty) > 10 else ''}); remove them or fill them in before predicting.")
    tok = Tokenizer.from_str(tokenizer_json)
    ids = [np.asarray(e.ids[:meta.max_tokens] or [1], dtype=np.int64) for e in tok.encode_batch(cleaned)]
    batches = TextBatches(ids, np.zeros(len(ids), dtype=np.int64), batch_size)
    logits = predict_batches(model, batches)
    probs = np.empty_like(logits)
    probs[batches.order()] = torch.softmax(torch.from_numpy(logits), -1).numpy()
    labels = meta.labels
    out = pd.DataFrame({"text": texts, "predicted": [labels[i] for i in probs.argmax(1)]})
    for i, name in enumerate(labels):
        out[f"prob_{name}"] = probs[:, i]
    return out


def predict_file_texts(model, meta, checkpoint_meta: dict, input_path: str, cfg) -> pd.DataFrame:
    from ..data.sources import map_columns

    d = cfg.data
    df = read_user_file(input_path, na_values=d.na_values, encoding=d.encoding)
    text_only = {k: v for k, v in d.columns.items() if k == "text"}  # labels are not needed here
    df = map_columns(df, text_only, ("text",), ("text",), str(input_path), "sentiment")
    return predict_texts(model, checkpoint_meta["tokenizer"], meta, df["text"].fillna("").astype(str).tolist())
