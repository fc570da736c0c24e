"""The one atomic writer: every output is written to a temp file beside its target, then renamed, so a reader
(or a killed run) never sees half a file and a failed stage never destroys the previous good output.

Files get the mode an ordinary ``open()`` would give them (0666 less the process umask), not ``mkstemp``'s
0600. JSON is written with sorted keys so that equal content gives equal bytes (DVC hashes outputs).
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = ["atomic_path", "write_bytes_atomic", "write_text_atomic", "write_json_atomic", "write_parquet_atomic",
           "json_default", "write_with"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on normal exit it is renamed onto ``path``, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes_atomic(data: bytes, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(text: str, path: str | Path) -> Path:
    return write_bytes_atomic(text.encode("utf-8"), path)


def json_default(obj: Any) -> Any:
    """numpy scalars/arrays, dates and paths as plain JSON values."""
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    return str(obj)


def write_json_atomic(obj: Any, path: str | Path) -> Path:
    return write_text_atomic(json.dumps(obj, indent=2, sort_keys=True, default=json_default) + "\n", path)


def write_parquet_atomic(df, path: str | Path, schema=None) -> Path:
    """pandas -> Parquet (explicit pyarrow schema when given), without pandas metadata that varies by version."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def write_with(writer: Callable[[Path], Any], path: str | Path) -> Path:
    """Run ``writer(tmp_path)`` (any library's save-to-path) atomically onto ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)
