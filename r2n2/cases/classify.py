"""Scoring, reporting and prediction of the text kind's classifier (the ``sentiment`` case and its instances).
Evaluation loads checkpoints and scores them; it never trains."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .base import predict_batches, write_predict_calibration
from ..data.sources import clean_text, map_columns, read_user_file
from ..data.textkey import near_duplicate_keys
from ..data.window import TextBatches
from ..errors import DataError
from ..evaluate.baselines import (
    majority_baseline, tune_tfidf_many, tune_vader_thresholds, vader_classes, vader_compound,
)
from ..evaluate.calibration import (
    aps_sets, calibration_block, plot_reliability, predict_calibration, set_threshold, softmax,
)
from ..evaluate.engine import (
    ablation_check, ablation_lines, across_seeds, adjust_families, comparison_table, comparison_text, families_lines,
    p_text, seed_rows, seed_table,
)
from ..evaluate.metrics import classification_metrics
from ..evaluate.plots import plot_confusion, plot_learning_curves, write_csv
from ..evaluate.report import fmt, history, md_table, verdict_text
from ..evaluate.stats import SEED_TESTS, classifier_bootstrap, macro_f1, mcnemar_test, mde_block, verdict
from ..io import write_json_atomic, write_text_atomic

__all__ = ["evaluate_classifier", "predict_texts", "predict_file_texts", "class_logits", "class_predictions"]

CALIBRATION_BINS = 15  # equal-width confidence bins of the ECE and the reliability diagram (Guo et al. 2017)
CONFORMAL_ALPHA = 0.1  # prediction sets aim at 90 % coverage


def class_logits(model, data, role: str, split: str):
    """(labels, (n, K) logits, rows) of one role/split, all in batch order."""
    b = data.batches(role, split, batch_size=256)
    rows = data.rows(role, split).iloc[b.order()].reset_index(drop=True)
    return b.targets(), predict_batches(model, b), rows


def class_predictions(model, data, role: str, split: str):
    """(labels, predicted ids, rows in batch order) of one role/split."""
    y, logits, rows = class_logits(model, data, role, split)
    return y, logits.argmax(1), rows


def text_groups(rows: pd.DataFrame) -> np.ndarray:
    """Near-duplicate group ids (``r2n2.data.textkey``) of the texts in ``rows``, for a bootstrap that keeps
    twins together: the split already sends a group's later copies to "excluded", so the twins left in a test
    set are copies inside it."""
    return pd.factorize(near_duplicate_keys(rows["text"]))[0]


def compare_classifiers(y, pa, pb, a: str, b: str, cfg, k: int, *, groups=None) -> list[dict]:
    """Paired bootstrap of the macro-F1 difference (over near-duplicate ``groups`` when given) and McNemar on
    accuracy (over texts), each with its verdict."""
    out = [classifier_bootstrap(y, pa, pb, a=a, b=b, metric="macro_f1", n_classes=k, reps=cfg.evaluate.bootstrap,
                                seed=cfg.evaluate.seed, groups=groups), mcnemar_test(y, pa, pb, a=a, b=b)]
    for c in out:
        c["verdict"] = verdict(c, higher_is_better=True)
    return out


_SEED_KEYS = ("accuracy", "macro_f1")
_SEED_COLUMNS = [("accuracy", "accuracy"), ("macro_f1", "macro-F1")]


def _seeds(families: dict, data, role: str, y, labels, a: str, groups) -> tuple[dict, list[dict]]:
    """Per family: mean, sd and n of accuracy and macro-F1 over seeds on one role's test texts; and ``a`` vs
    every other family by macro-F1, paired by seed (the engine's across-seed tests; near-duplicate groups kept
    whole)."""
    preds = {name: [class_predictions(m, data, role, "test")[1] for m, _ in family] for name, family in families.items()}
    table = seed_rows({name: [classification_metrics(y, p, labels) for p in ps] for name, ps in preds.items()},
                      _SEED_KEYS)
    yy, k = np.asarray(y, np.int64), len(labels)
    rows = {name: np.stack(ps).astype(np.int64) for name, ps in preds.items() if ps}  # (seeds, texts)

    def f1(p, ii):  # (s, texts) predicted ids -> (s,) macro-F1 on texts ii (confusion counts: reps x seeds calls)
        return np.array([macro_f1(yy[ii], row[ii], k) for row in p])

    return table, across_seeds(rows, f1, a=a, others=list(rows), metric="macro_f1", higher_is_better=True,
                               groups=groups)


def _text_baselines(train: pd.DataFrame, val: pd.DataFrame, test: pd.DataFrame, k: int,
                    tuned: dict) -> tuple[dict, dict, dict]:
    """Predictions of the majority class, the tuned TF-IDF + LR models in ``tuned`` (name -> (pipeline, chosen
    settings), from :func:`_tune_tfidf`; "tfidf_logreg" is trained on ``train``) and VADER (both thresholds
    chosen on validation) on ``test``; the chosen settings; and the TF-IDF + LR class probabilities
    {"tfidf_logreg": (on val, on test)} for its conformal sets."""
    preds, chosen = {}, {}
    preds["majority"] = majority_baseline(train["label_id"].to_numpy(), len(test))
    pipe, chosen["tfidf_logreg"] = tuned["tfidf_logreg"]
    preds["tfidf_logreg"] = pipe.predict(list(test["text"]))
    probs = {"tfidf_logreg": (_class_probs(pipe, val["text"], k), _class_probs(pipe, test["text"], k))}
    th = tune_vader_thresholds(vader_compound(val["text"]), val["label_id"].to_numpy())
    chosen["vader"] = th
    preds["vader"] = vader_classes(vader_compound(test["text"]), low=th["low"], high=th["high"])
    for name, (other, settings) in tuned.items():  # e.g. the target's TF-IDF + LR on source and target texts
        if name != "tfidf_logreg":
            preds[name], chosen[name] = other.predict(list(test["text"])), settings
    return preds, chosen, probs


def _tune_tfidf(cfg, fits: dict, k: int) -> dict:
    """name -> (train rows, val rows) => name -> (TF-IDF + LR pipeline, chosen settings), C and n-grams chosen on
    its validation rows; the fits run side by side on two processes (the two large ones took 12 s each)."""
    jobs = [(tr["text"], tr["label_id"], va["text"], va["label_id"]) for tr, va in fits.values()]
    return dict(zip(fits, tune_tfidf_many(jobs, seed=cfg.train.seed, n_classes=k)))


def _class_probs(pipe, texts, k: int) -> np.ndarray:
    """(n, k) ``predict_proba`` of a fitted classifier, one column per class id (0 for a class it never saw)."""
    p = np.zeros((len(texts), k))
    p[:, pipe.classes_] = pipe.predict_proba(list(texts))
    return p


def _transfer(cfg, data, models: dict, metrics: dict, histories: dict, tuned: dict, k: int) -> list[dict]:
    """Fine-tuned vs scratch and vs the target's TF-IDF + LR models on the Apple test texts, into ``metrics``."""
    labels = data.meta.labels
    ft, ft_meta = models["finetuned"]
    sc, sc_meta = models["scratch"]
    ty, tpred, ttest = class_predictions(ft, data, "target", "test")
    spred = class_predictions(sc, data, "target", "test")[1]
    tscore = lambda p: classification_metrics(ty, p, labels)  # noqa: E731
    metrics["finetuned"], metrics["scratch"] = tscore(tpred), tscore(spred)
    tpreds, tchosen, _ = _text_baselines(data.rows("target", "train"), data.rows("target", "val"), ttest, k,
                                         {"tfidf_logreg": tuned["target"],
                                          "tfidf_logreg_source_and_target": tuned["source_and_target"]})
    metrics["target_baselines"] = {n: tscore(p) for n, p in tpreds.items()}
    metrics["target_baseline_settings"] = tchosen
    tg = text_groups(ttest)
    comps = compare_classifiers(ty, tpred, spred, "finetuned", "scratch", cfg, k, groups=tg)
    comps += compare_classifiers(ty, tpred, tpreds["tfidf_logreg"], "finetuned", "tfidf_logreg (target)", cfg, k,
                                 groups=tg)
    comps += compare_classifiers(ty, tpred, tpreds["tfidf_logreg_source_and_target"], "finetuned",
                                 "tfidf_logreg_source_and_target", cfg, k, groups=tg)
    histories["finetuned"], histories["scratch"] = history(ft_meta), history(sc_meta)
    if "transfer_seeds" in models:
        metrics["transfer_seeds"], seed_comps = _seeds(models["transfer_seeds"], data, "target", ty, labels,
                                                       "finetuned", tg)
        comps += seed_comps
    return comps


def evaluate_classifier(cfg, data, models: dict, paths, log) -> dict:
    labels = data.meta.labels
    k = len(labels)
    model, model_meta = models["model"]
    y, logits, test_rows = class_logits(model, data, "pretrain", "test")
    pred = logits.argmax(1)
    score = lambda p, yy=y: classification_metrics(yy, p, labels)  # noqa: E731
    log("baselines: TF-IDF + LR and VADER, tuned on the validation split")
    val_rows, train_rows = data.rows("pretrain", "val"), data.rows("pretrain", "train")
    transfer = "finetuned" in models and "scratch" in models
    fits = {"tfidf_logreg": (train_rows, val_rows)}
    if transfer:  # the target's TF-IDF + LR: on its training texts, and on the source's and the target's together
        t_train, t_val = data.rows("target", "train"), data.rows("target", "val")
        fits |= {"target": (t_train, t_val),
                 "source_and_target": (pd.concat([train_rows, t_train], ignore_index=True), t_val)}
    tuned = _tune_tfidf(cfg, fits, k)
    bpreds, chosen, bprobs = _text_baselines(train_rows, val_rows, test_rows, k,
                                             {"tfidf_logreg": tuned["tfidf_logreg"]})
    metrics = {"model": score(pred), "baselines": {n: score(p) for n, p in bpreds.items()}, "baseline_settings": chosen,
               "test_period": {"entity": "source", "start": data.meta.cuts["test_start"], "end": data.meta.cuts["end"],
                               "n": int(len(y))}}
    histories = {"model": history(model_meta)}
    groups = text_groups(test_rows)
    metrics["test_period"]["groups"] = int(groups.max()) + 1
    comparisons = [c for b in ("tfidf_logreg", "vader")
                   for c in compare_classifiers(y, pred, bpreds[b], "model", b, cfg, k, groups=groups)]
    for name, (m, m_meta) in models.get("baselines", {}).items():
        p = class_predictions(m, data, "pretrain", "test")[1]
        metrics["baselines"][name] = score(p)
        histories[name] = history(m_meta)
        comparisons += compare_classifiers(y, pred, p, "model", name, cfg, k, groups=groups)
    if transfer:
        comparisons += _transfer(cfg, data, models, metrics, histories, tuned, k)
    metrics["seeds"], seed_comps = _seeds(models.get("seeds", {}), data, "pretrain", y, labels, "model", groups)
    comparisons += seed_comps
    metrics["comparisons"] = comparisons
    metrics["families"] = adjust_families(comparisons, metrics["baselines"])
    metrics["ablations"] = ablation_check(metrics, models.get("baselines", {}), data.case.benchmark)
    metrics["power"] = {"alpha": 0.05, "power": 0.8, "macro_f1": mde_block(comparisons, "macro_f1"),
                        "accuracy": mde_block(comparisons, "accuracy")}
    m_, b_ = metrics["model"]["macro_f1"], metrics["baselines"]["tfidf_logreg"]["macro_f1"]
    metrics["tests"] = {"model_minus_tfidf_macro_f1": m_ - b_}
    metrics["near_duplicates"] = data.meta.near_duplicates
    log("calibration: temperature and conformal sets fitted on the validation split, scored on test")
    y_val, val_logits, _ = class_logits(model, data, "pretrain", "val")
    tf_val, tf_test = bprobs["tfidf_logreg"]
    metrics["calibration"], reliability = calibration_block(
        val_logits, y_val, logits, y, bins=CALIBRATION_BINS, alpha=CONFORMAL_ALPHA,
        baselines={"tfidf_logreg": (tf_val, val_rows["label_id"].to_numpy(), tf_test)})
    write_json_atomic(metrics, paths.reports / "metrics.json")
    write_predict_calibration(paths, predict_calibration(val_logits, y_val, metrics["calibration"]["temperature"]))

    plots = paths.reports / "plots"
    if cfg.evaluate.plots:
        _plots(metrics, histories, reliability, y, pred, labels, plots, data.meta.case)
        if model.has_focus:
            _plot_focus(model, data, plots)
    write_text_atomic(_report(metrics, data), paths.reports / "report.md")
    return metrics


def _plots(metrics: dict, histories: dict, reliability: dict, y, pred, labels, plots, name: str) -> None:
    plot_confusion(metrics["model"]["confusion_matrix"], labels, plots / "confusion.png",
                   title=f"{name}: model confusion matrix (test)")
    write_csv(pd.DataFrame({"actual": [labels[i] for i in y], "predicted": [labels[i] for i in pred]}),
              plots / "confusion.csv")
    write_json_atomic([{"model": k_, **r} for k_, h in histories.items() for r in h], plots / "learning_curves.json")
    plot_learning_curves(histories, plots / "learning_curves.png", title=f"{name}: learning curves (CE loss)")
    c = metrics["calibration"]
    curves = {f"raw (ECE {fmt(c['ece']['raw'], 3)})": reliability["raw"],
              f"temperature scaled, T = {fmt(c['temperature'], 3)} (ECE {fmt(c['ece']['temperature'], 3)})":
                  reliability["temperature"]}
    plot_reliability(curves, plots / "reliability.png", title=f"{name}: reliability of the model (test)")
    write_csv(pd.DataFrame([{"probabilities": k_, **r} for k_, rows in reliability.items() for r in rows]),
              plots / "reliability.csv")


def _plot_focus(model, data, plots, *, n: int = 8, max_tokens: int = 16) -> None:
    """What the model looks at in ``n`` test tweets of at most ``max_tokens`` tokens (spread over the labels and
    lengths), each token written in its colour, the rows named "true label -> predicted"."""
    import torch
    from tokenizers import Tokenizer

    from ..models.presets import visualize_attention  # torch: only the attention plot needs it

    test_b = data.batches("pretrain", "test", batch_size=256)
    labels = list(data.meta.labels)
    short = [i for i in test_b.order() if 3 <= len(test_b.ids[i]) <= max_tokens]
    by_label = [[i for i in short if test_b.labels[i] == k] for k in range(len(labels))]
    per = -(-n // len(labels))  # from each label, texts spread from its shortest to its longest
    spread = [[pool[j] for j in np.linspace(0, len(pool) - 1, min(per, len(pool))).round().astype(int)]
              for pool in by_label if pool]
    pick = [i for group in zip(*spread) for i in group][:n] or short[:n]
    sample = TextBatches([test_b.ids[i] for i in pick], test_b.labels[pick], n)
    x, lengths, y = next(iter(sample.iter_epoch(0)))
    w, kind = model.focus(x, lengths)
    with torch.no_grad():
        pred = model(x, lengths).argmax(-1)
    tok = Tokenizer.from_file(str(data.dir / "tokenizer.json"))
    tokens = [[tok.id_to_token(int(t)) for t in x[r, :int(lengths[r])]] for r in range(len(x))]
    rows = [f"{labels[int(y[r])]} -> {labels[int(pred[r])]}" for r in range(len(x))]
    sums = torch.stack([w[r, :int(lengths[r])].sum() for r in range(len(x))])
    total = " (each row sums to 1)" if bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-3)) else ""
    visualize_attention(x, w, plots / "attention.png", title=f"{data.meta.case}: {kind}, {n} test tweets",
                        tokens=tokens, row_labels=rows,
                        caption=f"Colour: the model's {kind} on each token{total}; brighter = more. Rows: test "
                                f"tweets of {max_tokens} tokens or fewer, named true label -> the model's prediction.")


def _settings_table(settings: dict) -> list[str]:
    """The baselines' settings chosen on validation as a small table: TF-IDF + LR's C and n-grams, VADER's
    thresholds, each with the validation macro-F1 that chose it."""
    lines = ["| baseline | chosen on validation | validation macro-F1 |", "|---|---|---|"]
    for name, s in settings.items():
        if "C" in s:
            lo, hi = s["ngram_range"]
            what = f"C = {fmt(float(s['C']))}, word n-grams {lo}–{hi}"
        else:
            what = f"negative below {fmt(float(s['low']))}, positive above {fmt(float(s['high']))} (compound score)"
        lines.append(f"| {name} | {what} | {fmt(s.get('val_macro_f1'), 3)} |")
    return lines


def _report(m: dict, data) -> str:
    cols = ["accuracy", "macro_f1", "macro_recall"]
    cuts = data.meta.cuts
    by = {(c["b"], c["metric"]): c for c in m["comparisons"] if c["a"] == "model" and c["test"] not in SEED_TESTS}

    def plain(c, name: str) -> str:
        if c is None or c["verdict"] == "tie":
            return (f"a tie with {name} (differences under {fmt(c and c['mde'], 3)} could not have been seen; "
                    f"{p_text(c)})")
        return f"{c['verdict']} than {name} ({p_text(c)})"

    nd = m["near_duplicates"]
    lines = ["# Sentiment report", "",
             f"Test split of the pretraining domain (tweets not about Apple): the newest texts, {data.meta.time} "
             f"{cuts['test_start']} on ({m['test_period']['n']} texts). {nd.get('texts_in_shared_groups', 0)} texts "
             f"share a near-duplicate group (RT prefix, links, mentions, punctuation removed); texts whose group "
             f"appeared in an earlier split were excluded: {nd.get('excluded', {})}.", "",
             md_table({"model": m["model"], **m["baselines"]}, cols), "",
             f"By macro-F1 (bootstrap over the {m['test_period'].get('groups', 'n/a')} near-duplicate groups of the "
             f"test texts, so twins stay together) the model is {plain(by.get(('tfidf_logreg', 'macro_f1')), 'TF-IDF + LR')} "
             f"and {plain(by.get(('vader', 'macro_f1')), 'VADER')}. The baselines' settings, chosen on the "
             "validation split only:", "", *_settings_table(m["baseline_settings"]), "",
             "Paired comparisons (diff = a minus b; positive favours a):", "",
             comparison_table(m["comparisons"], ablations=m.get("ablations")), "", *ablation_lines(m),
             *families_lines(m)]
    lines += seed_table("Across seeds (mean ± sd):", m.get("seeds", {}), _SEED_COLUMNS, data.meta.case)
    if "finetuned" in m:
        v = next((c for c in m["comparisons"] if c["a"] == "finetuned" and c["b"] == "scratch"
                  and c["metric"] == "macro_f1" and c["test"] not in SEED_TESTS), None)
        lines += ["Transfer to Apple tweets (held-out Apple test set): fine-tuned vs trained from scratch on the "
                  "same Apple training data (own early-stopped budget), and the target baselines:", "",
                  md_table({"finetuned": m["finetuned"], "scratch": m["scratch"], **m["target_baselines"]}, cols), "",
                  (f"Verdict: fine-tuned vs scratch is a **{verdict_text(v) if v else 'tie'}** by macro-F1 (first "
                   f"seed, bootstrap over near-duplicate groups, {p_text(v)})."), "",
                  "The target baselines' settings, chosen on the Apple validation split:", "",
                  *_settings_table(m.get("target_baseline_settings", {})), ""]
        lines += seed_table("Transfer across seeds (mean ± sd, Apple test set):", m.get("transfer_seeds", {}),
                            _SEED_COLUMNS, data.meta.case)
        sv = next((c for c in m["comparisons"] if c["a"] == "finetuned" and c["b"] == "scratch"
                   and c["test"] == "two_way_bootstrap_seeds_items"), None)
        if sv:
            lines += [f"Across seeds (two-way bootstrap over seeds and Apple test texts, macro-F1) fine-tuned vs "
                      f"scratch: {comparison_text(sv)}.", ""]
    lines += _calibration_section(m["calibration"])
    lines += ["Plots: `plots/confusion.png`, `plots/learning_curves.png`, `plots/attention.png`, "
              "`plots/reliability.png`.", ""]
    return "\n".join(lines)


def _calibration_section(c: dict) -> list[str]:
    """Plain sentences on the test split: ECE and NLL before and after temperature scaling, and the coverage
    and size of the conformal prediction sets of the model and of TF-IDF + LR."""
    cf, acc = c["conformal"], c["accuracy"]
    tf = cf.get("tfidf_logreg")
    tf_text = (f" (TF-IDF + LR, sets from its own probabilities at the same alpha: {fmt(tf['coverage'], 3)} "
               f"with {fmt(tf['mean_set_size'], 3)} labels)") if tf else ""
    return ["## Probabilities", "",
            f"Expected calibration error (top label, {c['bins']} equal-width bins) {fmt(c['ece']['raw'], 3)} before, "
            f"{fmt(c['ece']['temperature'], 3)} after temperature scaling (T = {fmt(c['temperature'], 3)}, fitted on "
            f"validation); test NLL {fmt(c['nll']['raw'], 4)} before, {fmt(c['nll']['temperature'], 4)} after; "
            f"accuracy {fmt(acc['raw'], 4)} before and {fmt(acc['temperature'], 4)} after (the top label does not "
            f"move). {fmt(100 * (1 - cf['alpha']), 3)} % prediction sets (APS, non-randomised, calibrated on "
            f"validation) cover {fmt(cf['model']['coverage'], 3)} of the test texts with "
            f"{fmt(cf['model']['mean_set_size'], 3)} labels on average{tf_text}.", ""]


# ---------------------------------------------------------------------------------------------- predict
def predict_texts(model, tokenizer_json: str, meta, texts: list[str], *, batch_size: int = 512,
                  temperature: float = 1.0, sets: tuple[float, float] | None = None) -> pd.DataFrame:
    """Texts -> predicted label and class probabilities softmax(logits / ``temperature``) (1: the raw softmax),
    with the training tokenizer and truncation. ``sets``: (coverage level, APS threshold) adds ``set_<level>``,
    the labels of each text's conformal set (``r2n2.evaluate.calibration.aps_sets``), joined by "|"."""
    from tokenizers import Tokenizer

    cleaned = [clean_text(t) for t in texts]
    empty = [i for i, t in enumerate(cleaned) if not t]
    if empty:
        raise DataError(f"{len(empty)} text(s) are empty after cleaning (rows {', '.join(map(str, empty[:10]))}"
                        f"{' ...' if len(empty) > 10 else ''}); remove them or fill them in before predicting.")
    tok = Tokenizer.from_str(tokenizer_json)
    ids = [np.asarray(e.ids[:meta.max_tokens] or [1], dtype=np.int64) for e in tok.encode_batch(cleaned)]
    batches = TextBatches(ids, np.zeros(len(ids), dtype=np.int64), batch_size)
    logits = np.empty((len(ids), len(meta.labels)))
    logits[batches.order()] = predict_batches(model, batches)  # batch order -> input order
    probs = softmax(logits, temperature)  # (n, K), float64: the evaluation's own formula
    labels = meta.labels
    out = pd.DataFrame({"text": texts, "predicted": [labels[i] for i in probs.argmax(1)]})
    for i, name in enumerate(labels):
        out[f"prob_{name}"] = probs[:, i]
    if sets is not None:
        level, threshold = sets
        member = aps_sets(probs, threshold)  # (n, K) labels in each text's set
        out[f"set_{level:g}"] = ["|".join(l for l, m in zip(labels, row) if m) for row in member]
    return out


def predict_file_texts(model, meta, checkpoint_meta: dict, input_path: str, cfg, *, calibration: dict | None = None,
                       sets: float | None = None) -> pd.DataFrame:
    """Class probabilities of the texts of a user's file: temperature-scaled with ``calibration`` (the evaluate
    stage's, ``r2n2.evaluate.calibration.read_predict_calibration``; None: the raw softmax), and with ``sets`` a
    coverage level, conformal label sets at it (they need ``calibration``)."""
    if sets is not None and calibration is None:
        raise DataError("conformal sets need the calibration the evaluate stage fits for this model.")
    try:
        chosen = None if sets is None else (sets, set_threshold(calibration, sets))
    except ValueError as exc:
        raise DataError(f"--sets {sets}: {exc}.") from None
    d = cfg.data
    df = read_user_file(input_path, na_values=d.na_values, encoding=d.encoding)
    text_only = {k: v for k, v in d.columns.items() if k == "text"}  # labels are not needed here
    df = map_columns(df, text_only, ("text",), ("text",), str(input_path), meta.case)
    return predict_texts(model, checkpoint_meta["tokenizer"], meta, df["text"].fillna("").astype(str).tolist(),
                         temperature=1.0 if calibration is None else calibration["temperature"], sets=chosen)
