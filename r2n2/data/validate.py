"""Validate: Great Expectations (GX Core 1.x) suites gate the data before any training.

On success the raw Parquet is promoted to ``data/validated/<case>.parquet``; either way a summary goes to
``validation.json`` and GX Data Docs HTML beside it. On failure ``ValidationFailed`` carries the summary and
the previous validated output is left untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from ..errors import ValidationFailed
from .sources import LABELS, PRICE_COLUMNS, read_parquet

__all__ = ["validate", "stock_expectations", "text_expectations", "write_json_atomic"]


def write_json_atomic(obj, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2, default=str)
        fh.write("\n")
    os.replace(tmp, path)
    return path


def stock_expectations(gx, columns: list[str], cfg) -> list:
    E = gx.expectations
    exp = [E.ExpectColumnToExist(column=c) for c in ("entity", "date", "close")]
    prices = [c for c in ("open", "high", "low", "close") if c in columns]
    exp += [E.ExpectColumnValuesToNotBeNull(column=c) for c in ["date", *prices, *(["volume"] if "volume" in columns else [])]]
    exp += [E.ExpectColumnValuesToBeUnique(column="date"),
            E.ExpectColumnValuesToBeIncreasing(column="date", strictly=True),
            E.ExpectTableRowCountToBeBetween(min_value=cfg.validate.min_rows)]
    exp += [E.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True) for c in prices]
    if "volume" in columns:
        exp.append(E.ExpectColumnValuesToBeBetween(column="volume", min_value=0))
    pairs = [("high", "open"), ("high", "close"), ("open", "low"), ("close", "low"), ("high", "low")]
    exp += [E.ExpectColumnPairValuesAToBeGreaterThanB(column_A=a, column_B=b, or_equal=True)
            for a, b in pairs if a in columns and b in columns]
    return exp


def text_expectations(gx, columns: list[str], cfg) -> list:
    E = gx.expectations
    v = cfg.validate
    return [E.ExpectColumnToExist(column="text"), E.ExpectColumnToExist(column="label"),
            E.ExpectColumnValuesToNotBeNull(column="text"), E.ExpectColumnValuesToNotBeNull(column="label"),
            E.ExpectColumnValuesToBeInSet(column="label", value_set=list(LABELS)),
            E.ExpectColumnValueLengthsToBeBetween(column="text", min_value=v.min_text_length,
                                                  max_value=v.max_text_length),
            E.ExpectColumnProportionOfUniqueValuesToBeBetween(column="text", min_value=1 - v.max_duplicate_share),
            E.ExpectTableRowCountToBeBetween(min_value=v.min_rows)]


def _summarise(result, batch: str) -> list[dict]:
    rows = []
    for r in result.results:
        cfg = r.expectation_config
        exc = (r.exception_info or {}) if isinstance(r.exception_info, dict) else {}
        raised = exc.get("raised_exception") or any(
            isinstance(v, dict) and v.get("raised_exception") for v in exc.values())
        res = r.result or {}
        rows.append({
            "batch": batch, "expectation": cfg.type, "column": cfg.kwargs.get("column") or
            "/".join(str(cfg.kwargs[k]) for k in ("column_A", "column_B") if k in cfg.kwargs) or None,
            "success": bool(r.success) and not raised,
            "unexpected_count": res.get("unexpected_count"),
            "unexpected_percent": res.get("unexpected_percent"),
            "examples": [str(x) for x in (res.get("partial_unexpected_list") or [])[:5]],
            "observed_value": res.get("observed_value"),
            "exception": (exc.get("exception_message") or "error") if raised else None,
        })
    return rows


def _validate_old(case: str, cfg, raw_path: str | Path, out_path: str | Path,
             report_dir: str | Path) -> dict:
    """Run the case's expectation suite on ``raw_path``; promote it to ``out_path`` only if all pass."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx  # lazy: ~4 s import

    df = read_parquet(raw_path, f"raw {case} data")
    report_dir = Path(report_dir)
    docs_dir = report_dir / "data_docs"
    ctx = gx.get_context(mode="ephemeral")
    try:
        ctx.variables.progress_bars = gx.data_context.types.base.ProgressBarsConfig(globally=False)
    except Exception:  # noqa: BLE001 - cosmetic only
        pass
    ctx.add_data_docs_site(site_name="r2n2", site_config={
        "class_name": "SiteBuilder", "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())}})
    asset = ctx.data_sources.add_pandas("r2n2").add_dataframe_asset(case)
    batch_def = asset.add_batch_definition_whole_dataframe("whole")
    suite = ctx.suites.add(gx.ExpectationSuite(name=f"{case}_suite"))
    make = stock_expectations if cfg.kind == "prices" else text_expectations
    for expectation in make(gx, list(df.columns), cfg):
        suite.add_expectation(expectation)
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(data=batch_def, suite=suite, name=f"{case}_vd"))
    checkpoint = ctx.checkpoints.add(gx.Checkpoint(
        name=f"{case}_checkpoint", validation_definitions=[vd],
        actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5}))

    # Prices are validated per entity (dates increase within a series, not across the long table).
    batches = ([(str(name), part.reset_index(drop=True)) for name, part in df.groupby("entity", sort=False)]
               if cfg.kind == "prices" and "entity" in df else [(case, df)])
    rows: list[dict] = []
    for name, part in batches:
        run = checkpoint.run(batch_parameters={"dataframe": part})
        for vr in run.run_results.values():
            rows += _summarise(vr, name)
    failures = [r for r in rows if not r["success"]]
    summary = {"case": case, "success": not failures, "rows": int(len(df)), "batches": [b for b, _ in batches],
               "expectations": len(rows), "failed": len(failures), "results": rows,
               }
    write_json_atomic(summary, report_dir / "validation.json")
    if failures:
        parts = []
        for f in failures[:6]:
            what = f"{f['expectation']}({f['column']})" if f["column"] else f["expectation"]
            detail = (f"{f['unexpected_count']} row(s), e.g. {', '.join(f['examples'][:3])}"
                      if f["unexpected_count"] else f"observed {f['observed_value']}" if f["observed_value"]
                      is not None else f["exception"] or "failed")
            parts.append(f"[{f['batch']}] {what}: {detail}")
        more = f"; and {len(failures) - 6} more" if len(failures) > 6 else ""
        raise ValidationFailed(
            f"validation of {case} data failed {len(failures)} of {len(rows)} expectations: {'; '.join(parts)}{more}. "
            f"Details: {report_dir / 'validation.json'} and {docs_dir / 'index.html'}. The previous validated "
            f"data (if any) was left untouched.", summary)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    shutil.copyfile(raw_path, tmp)
    os.replace(tmp, out_path)
    return summary


# ---------------------------------------------------------------------------------------------- (interim API)
from dataclasses import dataclass  # noqa: E402
from types import SimpleNamespace  # noqa: E402


@dataclass
class PriceChecks:
    min_rows: int = 500                  # per entity


@dataclass
class TextChecks:
    min_rows: int = 500
    min_text_length: int = 1             # characters, after normalisation
    max_text_length: int = 1000          # characters
    max_duplicate_share: float = 0.05    # share of duplicated texts allowed


def price_suite(checks):
    return SimpleNamespace(kind="prices", validate=checks)


def text_suite(checks):
    return SimpleNamespace(kind="texts", validate=checks)


def validate(name, suite, raw_path, out_path, report_dir):
    return _validate_old(name, suite, raw_path, out_path, report_dir)
