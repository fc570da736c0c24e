"""(interim) UI server and plot URLs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def plot_url(path) -> str:
    base = os.environ.get("R2N2_FILES_URL", "http://127.0.0.1:4201").rstrip("/")
    rel = Path(path).resolve().relative_to((Path.cwd() / "data" / "reports").resolve()).as_posix()
    return f"{base}/{rel}"


def run_ui(port: int) -> int:
    return subprocess.call([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)])
