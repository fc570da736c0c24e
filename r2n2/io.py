"""The one atomic writer: every output is written to a temp file beside its target, then renamed, so a reader
(or a killed run) never sees half a file and a failed stage never destroys the previous good output.

Files get the mode an ordinary ``open()`` would give them (0666 less the process umask), not ``mkstemp``'s
0600. JSON is written with sorted keys so that equal content gives equal bytes (DVC hashes outputs).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from .errors import ConfigError, DataError, DiskFull, R2N2Error

__all__ = ["atomic_path", "keep_previous", "write_bytes_atomic", "write_text_atomic", "write_json_atomic", "write_parquet_atomic",
           "json_default", "write_with"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on normal exit it is renamed onto ``path``, on error removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _disk_full(exc, path) or exc
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        full = _disk_full(exc, path)
        if full is not None:
            raise full from exc
        raise


def _disk_full(exc: BaseException, path: Path):
    """A ``DiskFull`` paragraph for an out-of-space error (also one a library wrapped, e.g. pyarrow's or torch's
    RuntimeError naming errno 28), else None."""
    import errno
    import shutil

    if isinstance(exc, DiskFull):
        return None
    text = str(exc)
    if not ((isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT))
            or "No space left on device" in text or "error code: 28" in text or "errno 28" in text.lower()):
        return None
    try:
        free = f"{shutil.disk_usage(path.parent).free / 1e6:.1f} MB free"
    except OSError:
        free = "free space unknown"
    return DiskFull(f"disk full: writing {path} failed because its file system has no space left ({free}). "
                    f"The previous {path.name} was kept (outputs are written to a temporary file and renamed into "
                    "place only when complete), so earlier results are intact. Free space on that file system, "
                    "then rerun the same command.")


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


def _backup_of(path: Path, state: str = "prev") -> Path:
    """Beside ``path``: its complete backup (``prev``), one being made (``partial``), one being removed
    (``trash``) or the lock of the stage writing it (``lock``)."""
    return path.with_name(f".{path.name}.r2n2-{state}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _discard(backup: Path) -> None:
    """Remove a backup so that no interruption can leave a part of it under its complete name: rename it away,
    then delete it."""
    if backup.exists() or backup.is_symlink():
        trash = backup.with_name(backup.name.replace("-prev", "-trash"))
        _remove(trash)
        os.replace(backup, trash)
        _remove(trash)


def _restore(path: Path) -> None:
    """Put the complete backup of ``path`` back in its place (what a run that failed or was killed leaves to
    undo); a partial one (its making was interrupted: the output itself was never touched) or one being
    removed is deleted."""
    for state in ("partial", "trash"):
        _remove(_backup_of(path, state))
    backup = _backup_of(path)
    if backup.exists():
        _remove(path)
        os.replace(backup, path)


def _link_copy(src: Path, dst: Path) -> None:
    """Hard links of ``src`` (a file or a tree) at ``dst``, made under a ``partial`` name and renamed to ``dst``
    only when complete: no bytes copied, so it works on a nearly full disk; a file system without hard links gets
    a copy. Writes are renames, so the links keep the old contents."""
    def link(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    partial = dst.with_name(dst.name.replace("-prev", "-partial"))
    _remove(partial)
    try:
        if src.is_dir():
            shutil.copytree(src, partial, copy_function=link)
        else:
            link(src, partial)
    except BaseException:
        _remove(partial)
        raise
    os.replace(partial, dst)


def _remove_dead_temps(paths: list[Path]) -> None:
    """Temp files of ``atomic_path`` that a killed writer left beside (or inside) these outputs. Called while this
    run holds every output's lock, so no live writer of them exists: whatever ``.<name>.*.tmp`` is there is dead."""
    for p in paths:
        stale = list(p.parent.glob(f".{p.name}.*.tmp"))
        if p.is_dir():
            stale += list(p.rglob(".*.tmp"))
        for t in stale:
            t.unlink(missing_ok=True)


@contextmanager
def keep_previous(paths, *, keep_on: tuple[type[BaseException], ...] = ()) -> Iterator[None]:
    """A stage's outputs as one unit: if the block raises (a bug, a full disk, Ctrl-C), every path in ``paths``
    is put back as it was before (or removed if it did not exist), so a failed run never leaves a mix of new and
    old files; ``keep_on`` exceptions keep what the block wrote (e.g. a validation failure's own report). A
    backup left by a killed run (``.<name>.r2n2-prev`` beside the output) is restored, and its temp files removed,
    before the block starts.
    The block holds an OS lock per output (``.<name>.r2n2-lock``): a second run writing the same outputs at the
    same time is refused at once (it would take the first one's backup for a killed run's)."""
    from filelock import FileLock, Timeout

    paths = [Path(p) for p in paths]
    locks = []
    try:
        for p in paths:
            p.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(_backup_of(p, "lock")))
            try:
                lock.acquire(timeout=0)
            except Timeout:
                raise ConfigError(f"another run is writing {p} right now (its lock {_backup_of(p, 'lock')} is held), "
                                  "so this one did nothing; wait for it to finish and rerun.") from None
            locks.append(lock)
        _remove_dead_temps(paths)
        with _kept(paths, keep_on):
            yield
    except OSError as exc:
        full = _disk_full(exc, paths[0] if paths else Path("."))
        if full is None or isinstance(exc, R2N2Error):
            raise
        raise full from exc
    finally:
        for lock in reversed(locks):
            lock.release()


@contextmanager
def _kept(paths: list[Path], keep_on) -> Iterator[None]:
    for p in paths:
        _restore(p)
    made = []
    try:
        for p in paths:
            if p.exists():
                _link_copy(p, _backup_of(p))
                made.append(p)
    except BaseException as exc:
        for p in made:
            _discard(_backup_of(p))
        if isinstance(exc, OSError):
            full = _disk_full(exc, paths[len(made)])
            first = exc.args[0][0] if isinstance(exc, shutil.Error) and exc.args and exc.args[0] else None
            detail = f"{first[2]}, at {first[0]}" if first else f"{type(exc).__name__}: {exc}"
            raise (full or DataError(f"could not keep a backup of {paths[len(made)]} before the stage ran "
                                     f"({detail[:200]}); nothing was changed.")) from exc
        raise
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, keep_on):
            for p in made:
                _discard(_backup_of(p))
            raise
        for p in paths:
            if p in made:
                _restore(p)
            elif p.exists():
                _remove(p)
        raise
    for p in made:
        _discard(_backup_of(p))
