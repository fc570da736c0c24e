"""DVC's lock file after a killed run.

DVC rewrites ``.dvc/tmp/rwlock`` in place while it works; a process killed during that write (kill -9, a lost
machine) leaves the file unreadable, and every later DVC command then stops with "Unable to read RWLock-file
'.dvc/tmp/rwlock'. JSON structure is corrupted". DVC's own remedy is to delete the file (treeverse/dvc #3164,
#7615). ``make run`` does that before ``dvc repro``, and only when the file does not parse and no DVC process holds
the repository lock (``.dvc/tmp/lock``, taken here the way DVC takes it), so a running DVC is never disturbed.

    python -m flows.dvclock          # what `make run` runs first: prints a line when it removed something
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

__all__ = ["clear_unreadable_rwlock"]


def clear_unreadable_rwlock(root: str | Path = ".") -> str | None:
    """Remove ``root/.dvc/tmp/rwlock`` when it cannot be parsed and no DVC process is running in ``root``; returns
    a one-line message when it removed the file, else None (readable, absent, or a DVC process is running)."""
    path = Path(root) / ".dvc" / "tmp" / "rwlock"
    try:
        json.loads(path.read_text())
        return None
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError):
        pass
    import zc.lockfile

    try:
        lock = zc.lockfile.LockFile(str(path.with_name("lock")))
    except zc.lockfile.LockError:
        return None  # a DVC process holds the repository: its rwlock is its business
    try:
        path.unlink(missing_ok=True)
    finally:
        lock.close()
    return (f"removed the unreadable {path} (a DVC run killed while writing it leaves it half-written; deleting it "
            "is DVC's own remedy)")


if __name__ == "__main__":
    message = clear_unreadable_rwlock()
    if message:
        print(message, file=sys.stderr)
