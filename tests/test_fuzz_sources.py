"""Property-based fuzzing of every case's source reading (issue 24, item 1), in-process.

Each generated input (a malformed CSV / TSV / Parquet file, a folder of drops, an SQLite table) is either
accepted, and then the raw table ingest wrote is canonical, or refused with one of the project's expected errors
whose message is one short paragraph; never any other exception, and a refused input leaves the previous good
``data/raw`` (and, where validate runs, ``data/validated``) byte for byte. Examples are derandomized, so a CI run
is deterministic; ``test_fuzz_ingest`` is the cheap part, ``test_fuzz_ingest_validate_window`` (the Great
Expectations gate and the window step on a subset) is marked slow.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from r2n2.data.sources import DataConfig
from r2n2.errors import R2N2Error, ValidationFailed
from r2n2.registry import load_params, run_stage

from .conftest import make_panel, make_prices, make_texts

PRICE_CASES = ("stocks", "volatility", "panel")
CASES = (*PRICE_CASES, "sentiment")
MAX_MESSAGE = 600
FUZZ = {"deadline": None, "derandomize": True, "database": None, "print_blob": True,
            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                                   HealthCheck.function_scoped_fixture]}
OUTCOMES: Counter = Counter()  # accepted / refused by reason, printed at the end (for docs/bad_inputs.md)

# ------------------------------------------------------------------------------------------------ the project
GOOD = {"stocks": lambda: make_prices(60, seed=1).assign(Entity="alpha"),
        "volatility": lambda: make_prices(60, seed=2).rename(columns={"Price": "Close"}),
        "panel": lambda: make_panel(n_entities=3, n=60),
        "sentiment": lambda: make_texts(60)}
GOOD_COLUMNS = {"stocks": {"close": "Price", "entity": "Entity"}, "volatility": {},
                "panel": {}, "sentiment": {"text": "body", "label": "sentiment"}}


@dataclasses.dataclass(repr=False)
class Home:
    root: Path
    cfgs: dict
    good: dict  # case -> {protected path: bytes}

    def __repr__(self) -> str:  # hypothesis prints the arguments of a failing example
        return f"Home({self.root})"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A project whose ingest and validate have succeeded once per case on a folder of good drops; returns
    (root, {case: cfg}, {case: {protected path: bytes}})."""
    root = tmp_path_factory.mktemp("fuzz")
    from .conftest import ROOT

    params = load_params(ROOT / "params.yaml")
    cfgs, good = {}, {}
    for case in CASES:
        drops = root / f"good-{case}"
        drops.mkdir()
        GOOD[case]().to_csv(drops / "0-good.csv", index=False)
        cfg = params.case(case)
        cfg = dataclasses.replace(cfg, data=DataConfig(source=str(drops), columns=GOOD_COLUMNS[case]),
                                  validate=dataclasses.replace(cfg.validate, min_rows=3))
        cfgs[case] = cfg
        run_stage("ingest", case, cfg, root)
        run_stage("validate", case, cfg, root)
        good[case] = {p: p.read_bytes() for p in (root / "data/raw" / f"{case}.parquet",
                                                   root / "data/validated" / f"{case}.parquet")}
    yield Home(root, cfgs, good)
    print("\nfuzz outcomes:", dict(sorted(OUTCOMES.items())))


# ---------------------------------------------------------------------------------------------- generators
NASTY_NUMBERS = ["N/A", "NaN", "nan", "", "-", ".", "inf", "-inf", "1e309", "-5", "0", "1,234.5", "1.234,5",
                 "abc", "1.5e300", "True", " 12 ", "1e-320", "0x1F", "NULL", "None", "—"]
NASTY_DATES = ["2020-13-45", "N/A", "", "01/02/2020", "20200102", "2020-01-02T16:00:00-05:00",
               "2020-01-02T16:00:00+09:00", "2020-01-02 00:00:00Z", "yesterday", "1577923200", "2020-W01-4",
               "0001-01-01", "9999-12-31"]
NASTY_TEXTS = ["", "a\nb", "line1\r\nline2", 'quote " inside', "comma, inside", "tab\tinside", "\ufeffbom",
               "x" * 5000, "é" * 50, "\x00nul", "😀" * 10, "&amp;amp;", "  ", "=cmd|' /C calc'!A0"]
LABELS = ["pos", "NEG", "neutral", "1", "-1", "0", "2", "", "N/A", "positive ", "maybe", "1.0", "Neu"]
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]


@st.composite
def price_table(draw, case: str) -> list[list[object]]:
    """Header + rows of a price table as Python values (str or float), with malformations drawn in."""
    n = draw(st.integers(0, 14))
    entities = draw(st.sampled_from([0, 1, 2])) if case != "panel" else draw(st.sampled_from([1, 2, 3]))
    fields = ["Date", "Close"] + [c for c in ("Open", "High", "Low", "Volume")
                                  if draw(st.booleans()) or (case == "volatility" and c != "Volume")]
    dates = list(pd.bdate_range("2020-01-01", periods=max(n, 1)).strftime("%Y-%m-%d"))[:n]
    rows = []
    for e in range(max(entities, 1)):
        for i, d in enumerate(dates):
            close = draw(st.floats(1, 1e4, allow_nan=False)) if i == 0 else 100 + i
            row = {"Date": d, "Close": close, "Open": close, "High": close * 1.01, "Low": close * 0.99,
                   "Volume": 1000.0 + i}
            if entities:
                row["Entity"] = f"E{e}"
            rows.append(row)
    if entities:
        fields.insert(0, "Entity")
    for _ in range(draw(st.integers(0, 3))):  # nasty cells
        if rows:
            r, c = draw(st.integers(0, len(rows) - 1)), draw(st.sampled_from(fields))
            pool = NASTY_DATES if c == "Date" else NASTY_NUMBERS
            rows[r][c] = draw(st.one_of(st.sampled_from(pool), st.floats(allow_nan=True, allow_infinity=True),
                                        st.integers(-10**20, 10**20)))
    for op in draw(st.lists(st.sampled_from(["shuffle", "repeat", "offsets", "drop_date", "drop_close",
                                             "dup_close", "header_row", "lower", "extra", "slash_dates"]),
                            max_size=2)):
        if op == "shuffle":
            rows = draw(st.permutations(rows))
        elif op == "repeat" and rows:
            rows.insert(draw(st.integers(0, len(rows))), dict(rows[draw(st.integers(0, len(rows) - 1))]))
        elif op == "offsets":
            for row in rows:
                row["Date"] = f"{row.get('Date', row.get('date'))}T16:00:00{draw(st.sampled_from(['-05:00', '-04:00', '+00:00', 'Z', '']))}"
        elif op in ("drop_date", "drop_close"):
            fields = [f for f in fields if f != op[5:].capitalize()]
        elif op == "dup_close":
            fields.append("Close")
        elif op == "header_row" and rows:
            rows.insert(draw(st.integers(0, len(rows))), {f: f for f in fields})
        elif op == "lower":
            rows = [{k.lower() if k != "Entity" else k: v for k, v in row.items()} for row in rows]
            fields = [f.lower() if f != "Entity" else f for f in fields]
        elif op == "extra":
            fields.append("note")
            for row in rows:
                row["note"] = draw(st.sampled_from(["x", 1, 2.5, "", None]))
        elif op == "slash_dates":
            for row in rows:
                row["Date"] = pd.Timestamp(row["Date"][:10]).strftime("%m/%d/%Y") if row.get("Date") in dates else row.get("Date")
    return [fields] + [[row.get(f, row.get(f.lower())) for f in fields] for row in rows]


@st.composite
def text_table(draw) -> list[list[object]]:
    n = draw(st.integers(0, 14))
    fields = ["body", "sentiment"] + [c for c in ("confidence", "time") if draw(st.booleans())]
    one_class = draw(st.booleans())
    rows = []
    for i in range(n):
        text = draw(st.one_of(st.text(max_size=40), st.sampled_from(NASTY_TEXTS)))
        label = "pos" if one_class else draw(st.sampled_from(LABELS[:3] if i % 4 else LABELS))
        rows.append({"body": text, "sentiment": label,
                     "confidence": draw(st.sampled_from([0.5, 1.0, "N/A", "", float("inf"), -3.0, "high"])),
                     "time": draw(st.sampled_from([f"2020-01-{1 + i % 28:02d}", f"2020-01-0{1 + i % 9}T10:00:00+02:00",
                                                   f"2020-01-0{1 + i % 9}T10:00:00-05:00", str(i), "N/A", "2020-02-30"]))})
    for op in draw(st.lists(st.sampled_from(["drop_text", "drop_label", "header_row", "dup_label", "shuffle"]),
                            max_size=2)):
        if op == "drop_text":
            fields = [f for f in fields if f != "body"]
        elif op == "drop_label":
            fields = [f for f in fields if f != "sentiment"]
        elif op == "header_row" and rows:
            rows.insert(draw(st.integers(0, len(rows))), {f: f for f in fields})
        elif op == "dup_label":
            fields.append("sentiment")
        elif op == "shuffle":
            rows = draw(st.permutations(rows))
    return [fields] + [[row.get(f) for f in fields] for row in rows]


def _cell(v) -> str:
    return "" if v is None else str(v)


def csv_bytes(table, *, sep: str, crlf: bool, quote_all: bool, encoding: str) -> bytes:
    buf = io.StringIO()
    csv.writer(buf, delimiter=sep, lineterminator="\r\n" if crlf else "\n",
               quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL).writerows(
        [[_cell(v) for v in row] for row in table])
    return buf.getvalue().encode(encoding, errors="replace")


def frame_of(table) -> pd.DataFrame:
    """The table as a typed frame: a column of numbers becomes float64, a column of dates datetime64."""
    header, rows = table[0], table[1:]
    names = [h if header.index(h) == i else f"{h}.{i}" for i, h in enumerate(header)]  # Parquet: unique names
    df = pd.DataFrame([[_cell(v) for v in row] for row in rows], columns=names, dtype="object")
    for c in names:
        num = pd.to_numeric(df[c], errors="coerce")
        if len(df) and num.notna().all():
            df[c] = num.astype("float64")
    return df


@st.composite
def source(draw, case: str, folder: Path, drops: Path) -> tuple[DataConfig, Path | None]:
    """Write one generated input under ``folder``; return its config and, for a drop added to the case's
    folder of good drops, the file to remove afterwards."""
    table = draw(text_table() if case == "sentiment" else price_table(case))
    kind = draw(st.sampled_from(["csv", "csv", "tsv", "parquet", "cut_parquet", "cut_csv", "empty", "folder",
                                 "sqlite", "drop"]))
    encoding = draw(st.sampled_from(ENCODINGS))
    opts = {"sep": draw(st.sampled_from([",", ",", ";", "\t", "|"])), "crlf": draw(st.booleans()),
                "quote_all": draw(st.booleans()), "encoding": encoding}
    columns = dict(GOOD_COLUMNS[case])
    if case == "stocks" and draw(st.booleans()):
        columns = {"close": "Close"}
    cfg = {"columns": columns, "na_values": draw(st.sampled_from([[], ["N/A"], [".", "-", "N/A", "NULL"]])),
               "missing": draw(st.sampled_from(["fail", "drop", "ffill"])),
               "encoding": draw(st.sampled_from(["utf-8", encoding])),
               "layout": draw(st.sampled_from(["auto", "auto", "long", "wide"])) if case != "sentiment" else "auto",
               "timezone": draw(st.sampled_from(["America/New_York", "UTC", "Asia/Tokyo"]))}
    remove = None
    folder.mkdir(parents=True, exist_ok=True)
    if kind in ("csv", "tsv", "cut_csv", "empty"):
        path = folder / f"in.{'tsv' if kind == 'tsv' else 'csv'}"
        data = csv_bytes(table, **(opts | ({"sep": "\t"} if kind == "tsv" else {})))
        path.write_bytes(b"" if kind == "empty" else data[: len(data) // 2] if kind == "cut_csv" else data)
    elif kind in ("parquet", "cut_parquet"):
        path = folder / "in.parquet"
        frame_of(table).to_parquet(path, index=False)
        if kind == "cut_parquet":
            data = path.read_bytes()
            path.write_bytes(data[: draw(st.integers(0, len(data) - 1))])
    elif kind == "folder":
        path = folder / "drops"
        path.mkdir()
        cut = draw(st.integers(1, max(len(table) - 1, 1)))
        csv.writer((path / "a.csv").open("w", newline="")).writerows(table[:cut])
        frame_of([table[0], *table[cut:]]).to_parquet(path / "b.parquet", index=False)
    elif kind == "sqlite":
        db = folder / "in.db"
        header = [h if table[0].index(h) == i else f"{h}_{i}" for i, h in enumerate(table[0])]
        with sqlite3.connect(db) as con:  # SQLite is dynamically typed: a column may mix text and numbers
            con.execute(f"CREATE TABLE prices ({', '.join(repr(h) for h in header)})")
            con.executemany(f"INSERT INTO prices VALUES ({', '.join('?' * len(header))})",
                            [[v if isinstance(v, (str, float, type(None))) else str(v) for v in row]
                             for row in table[1:]])
        con.close()
        path = Path(f"sqlite:///{db}")
        cfg["query"] = draw(st.sampled_from(["SELECT * FROM prices", "SELECT * FROM nope", "SELECT 1 AS x"]))
    else:  # a new drop beside the good one: same config, so ingest appends to the held data
        remove = drops / "1-new.csv"
        remove.write_bytes(csv_bytes(table, sep=",", crlf=opts["crlf"], quote_all=opts["quote_all"],
                                     encoding="utf-8"))
        return DataConfig(source=str(drops), columns=GOOD_COLUMNS[case]), remove
    return DataConfig(source=str(path) if kind != "sqlite" else f"sqlite:///{db}", **cfg), remove


# ---------------------------------------------------------------------------------------------- the property
def one_paragraph(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg and "Traceback" not in msg, f"{type(exc).__name__} over several lines: {msg!r}"
    assert 0 < len(msg) <= MAX_MESSAGE, f"{type(exc).__name__} of {len(msg)} characters: {msg!r}"
    return msg


def reason(msg: str) -> str:
    for key in ("not valid", "is empty", "not a readable Parquet", "has no column", "names a column",
                "single column", "non-numeric", "missing values", "not dates", "holds numbers", "no rows",
                "query", "same columns", "wide panel", "column entity", "open, high, low", "validation of"):
        if key in msg:
            return key
    return msg[:40]


def unchanged(good: dict[Path, bytes]) -> None:
    for path, data in good.items():
        assert path.read_bytes() == data, f"{path} was changed by a refused input"


def check_raw(case: str, path: Path) -> None:
    """An accepted input's raw table is canonical: the columns and types the case's window step reads."""
    df = pq.read_table(path).to_pandas()
    if case == "sentiment":
        assert list(df.columns)[:2] == ["text", "label"] and df["text"].map(type).eq(str).all()
        assert pd.api.types.is_integer_dtype(df["time"]) or str(df["time"].dtype) == "datetime64[us]"
    else:
        assert list(df.columns)[:2] == ["entity", "date"] and str(df["date"].dtype) == "datetime64[us]"
        assert df["entity"].map(type).eq(str).all()
        assert all(df[c].dtype == np.float64 for c in df.columns[2:])
    assert len(df) > 0


def attempt(case: str, cfg, root: Path, good: dict[Path, bytes], *, gate: bool) -> str:
    """Ingest (and with ``gate``, validate and window) one input; return the outcome; restore the good state."""
    raw, validated = list(good)
    try:
        run_stage("ingest", case, cfg, root)
    except R2N2Error as exc:
        unchanged(good)
        return f"{case} refused at ingest: {reason(one_paragraph(exc))}"
    try:
        check_raw(case, raw)
        if not gate:
            return f"{case} accepted"
        try:
            run_stage("validate", case, cfg, root)
        except ValidationFailed as exc:
            one_paragraph(exc)
            assert validated.read_bytes() == good[validated], "a failed validation changed data/validated"
            return f"{case} refused at validate"
        except R2N2Error as exc:
            return f"{case} refused at validate: {reason(one_paragraph(exc))}"
        try:
            run_stage("window", case, cfg, root)
        except R2N2Error as exc:
            return f"{case} refused at window: {reason(one_paragraph(exc))}"
        return f"{case} accepted through window"
    finally:
        for path, data in good.items():
            path.write_bytes(data)


def fuzz(home, tmp_path_factory, data, case: str, *, gate: bool) -> None:
    root, cfgs, good = home.root, home.cfgs, home.good
    folder = tmp_path_factory.mktemp("in")
    d, remove = data.draw(source(case, folder / "x", root / f"good-{case}"), label="source")
    try:
        cfg = dataclasses.replace(cfgs[case], data=d)
        OUTCOMES[attempt(case, cfg, root, good[case], gate=gate)] += 1
    finally:
        if remove is not None:
            remove.unlink()


@pytest.mark.parametrize("case", CASES)
@settings(max_examples=550, **FUZZ)
@given(data=st.data())
def test_fuzz_ingest(home, tmp_path_factory, data, case):
    fuzz(home, tmp_path_factory, data, case, gate=False)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
@settings(max_examples=25, **FUZZ)
@given(data=st.data())
def test_fuzz_ingest_validate_window(home, tmp_path_factory, data, case):
    fuzz(home, tmp_path_factory, data, case, gate=True)


# ------------------------------------------------------------------------ regressions that fuzzing found
def _refused(tmp_path, case: str, body: bytes, **config) -> str:
    from r2n2.data.sources import read_prices

    path = tmp_path / "in.csv"
    path.write_bytes(body)
    with pytest.raises(R2N2Error) as info:
        read_prices(DataConfig(source=str(path), **config), name=case, builtin=lambda: None)
    return one_paragraph(info.value)


def test_wide_panel_with_a_close_column_is_refused(tmp_path):
    # was: pandas' ValueError "value_name (close) cannot match an element in the DataFrame columns"
    msg = _refused(tmp_path, "panel", b"date,close,open\n2020-01-02,1,2\n", layout="wide")
    assert "read as a wide panel" in msg and "close, open" in msg and "layout=long" in msg


def test_utf16_without_byte_order_mark_is_refused(tmp_path):
    # was: UnicodeError "UTF-16 stream does not start with BOM" (not a UnicodeDecodeError) escaped
    msg = _refused(tmp_path, "stocks", b"Date,Close\n2020-01-02,1\n", encoding="utf-16")
    assert "is not valid utf-16" in msg


def test_missing_entity_is_refused(tmp_path):
    # was: accepted, and the raw table held a null entity
    msg = _refused(tmp_path, "panel", b"date,entity,close\n2020-01-02,A,1\n2020-01-03,,2\n")
    assert "column entity of" in msg and "1 missing value(s) (first at rows [1])" in msg
