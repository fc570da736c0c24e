"""`r2n2 ui`: the Prefect server and UI, plus a file server for report plots; both stop on SIGTERM and Ctrl-C.

Browsers refuse `file://` links and images on an http page, so report and replay artifacts embed their plots as
``data:`` URIs (`embedded_plot`): they show whenever the Prefect UI does. For pages that link files instead, a
small static server on 127.0.0.1 serves them. An artifact's pictures are published content-addressed (`published_plot_url`):
their bytes go to a store shared by every workspace of this user (`R2N2_PLOT_STORE`, default
~/.cache/r2n2/plots) as `<sha256>.png`, served under `/_plots/`, so a report version shows its own run's pictures
forever, whichever folder the run or `r2n2 ui` started in. The server also serves `data/reports/` (`plot_url`). The Prefect server runs
in its own process group, which is signalled as a whole on exit: `prefect server start` has children of its
own, and none of them may keep the port.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

from r2n2.errors import ConfigError
from r2n2.io import atomic_path

__all__ = ["DEFAULT_FILES_URL", "REPORTS_DIR", "embedded_plot", "plot_store", "plot_url", "published_plot_url", "run_ui",
           "serve_files"]

HOST = "127.0.0.1"  # never another interface: the file server has no authentication
REPORTS_DIR = Path("data") / "reports"
DEFAULT_FILES_URL = f"http://{HOST}:4201"
STOP_GRACE_S = 10.0  # how long the server's process group gets to exit before SIGKILL


def plot_url(path: str | os.PathLike[str], *, reports_dir: str | os.PathLike[str] = REPORTS_DIR,
             base: str | None = None) -> str:
    """The http URL under which `r2n2 ui`'s file server serves `path`, a file under `reports_dir`.

    The base comes from `base`, else the env var R2N2_FILES_URL, else http://127.0.0.1:4201. A path outside
    `reports_dir` is a ValueError (that server would not serve it).
    """
    root = Path(reports_dir).resolve()
    target = Path(path).resolve()
    try:
        rel = target.relative_to(root)
    except ValueError:
        raise ValueError(f"{path} is not under {reports_dir}, which is all `r2n2 ui` serves.") from None
    base = (base or os.environ.get("R2N2_FILES_URL") or DEFAULT_FILES_URL).rstrip("/")
    return f"{base}/{quote(rel.as_posix())}"


def plot_store() -> Path:
    """The content-addressed picture store (``R2N2_PLOT_STORE``, default ~/.cache/r2n2/plots)."""
    return Path(os.environ.get("R2N2_PLOT_STORE") or Path.home() / ".cache" / "r2n2" / "plots")


def embedded_plot(path: str | os.PathLike[str]) -> str:
    """The picture at `path` as a ``data:`` URI: what report and replay artifacts embed, so a picture shows
    whenever the Prefect UI does (no file server needed) and each artifact keeps its own run's bytes. Prefect's
    markdown renderer draws it (looked at in headless Chromium, 2026-12-07); the artifact grows by 4/3 of the
    picture's bytes (a report's ~270 KB of plots: ~360 KB)."""
    import base64

    src = Path(path)
    kind = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}.get(
        src.suffix.lower(), "application/octet-stream")
    return f"data:{kind};base64,{base64.b64encode(src.read_bytes()).decode()}"


def published_plot_url(path: str | os.PathLike[str], *, base: str | None = None) -> str:
    """Copy the picture at `path` into the store under its sha256 (never changed afterwards) and return the URL
    `r2n2 ui` serves it under: what a report artifact embeds, so the artifact keeps its own pictures."""
    import hashlib
    import shutil

    src = Path(path)
    name = hashlib.sha256(src.read_bytes()).hexdigest() + src.suffix.lower()
    target = plot_store() / name
    if not target.is_file():
        with atomic_path(target) as tmp:
            shutil.copyfile(src, tmp)
    base = (base or os.environ.get("R2N2_FILES_URL") or DEFAULT_FILES_URL).rstrip("/")
    return f"{base}/_plots/{name}"


class _QuietHandler(SimpleHTTPRequestHandler):
    store: Path | None = None  # served under /_plots/

    def translate_path(self, path: str) -> str:
        if self.store is not None and path.split("?", 1)[0].startswith("/_plots/"):
            name = Path(path.split("?", 1)[0]).name  # a flat store: no sub-folders, no ".."
            return str(self.store / name)
        return super().translate_path(path)

    def log_message(self, format, *args):  # noqa: A002 - one line per image request would drown the terminal
        pass


def _bind_error(what: str, port: int, exc: OSError) -> ConfigError:
    return ConfigError(f"Cannot start the {what} on {HOST}:{port} ({exc.strerror or exc}): another program, "
                       f"perhaps an earlier `r2n2 ui`, is using that port. Stop it, or choose another port.")


def serve_files(directory: str | os.PathLike[str], port: int, *, store: str | os.PathLike[str] | None = None
                ) -> ThreadingHTTPServer:
    """Serve `directory` (and the picture store under /_plots/) read-only over http on 127.0.0.1:`port` from a
    daemon thread; `.shutdown()` stops it."""
    Path(directory).mkdir(parents=True, exist_ok=True)  # before the first run there are no reports yet
    handler = functools.partial(type("_Handler", (_QuietHandler,), {"store": Path(store or plot_store())}),
                                directory=str(directory))
    try:
        httpd = ThreadingHTTPServer((HOST, port), handler)
    except OSError as exc:
        raise _bind_error("report file server", port, exc) from None
    threading.Thread(target=httpd.serve_forever, name="r2n2-files", daemon=True).start()
    return httpd


def _check_free(port: int) -> None:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError as exc:
            raise _bind_error("Prefect server", port, exc) from None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the server's whole process group, SIGKILL what is left after STOP_GRACE_S, and reap the leader."""
    pgid = proc.pid  # start_new_session: the group id is the leader's pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + STOP_GRACE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _group_alive(pgid):
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _shown(path: str) -> str:
    """A path as a user reads it: relative to the working folder when it lies inside it."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix() + "/"
    except ValueError:
        return path


def _announce(api_url: str) -> Path | None:
    """Write ``$PREFECT_HOME/ui.json`` (this server's API URL and our pid) where the project's Prefect home is
    set, so `r2n2` commands started in the project use this server instead of a temporary one on the same
    database (``flows.cli``); removed when the UI stops, and ignored once the pid is gone."""
    import json
    import urllib.request

    home = os.environ.get("PREFECT_HOME")
    if not home:
        return None
    target = Path(home) / "ui.json"

    def write_when_up() -> None:  # only once the server answers: a command started earlier starts its own
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{api_url}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({"api_url": api_url, "pid": os.getpid()}))

    threading.Thread(target=write_when_up, name="r2n2-ui-announce", daemon=True).start()
    return target


def run_ui(port: int = 4200, *, files_port: int = 4201, reports_dir: str | os.PathLike[str] = REPORTS_DIR) -> int:
    """Run the Prefect server/UI on 127.0.0.1:`port` and the report file server on `files_port` until stopped.

    Returns 0 when stopped by SIGTERM or SIGINT (Ctrl-C), else the server's exit status. Either way the
    server's process group is gone and both ports are free when it returns.
    """
    _check_free(port)
    httpd = serve_files(reports_dir, files_port)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    env = {**os.environ, "PREFECT_SERVER_API_HOST": HOST, "PREFECT_SERVER_API_PORT": str(port)}
    files_url = f"http://{HOST}:{files_port}"
    proc = announced = None
    try:
        # Own session: Ctrl-C reaches only us (we stop the server once, in order), and killpg reaches all of it.
        proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", HOST,
                                 "--port", str(port)], env=env, start_new_session=True)
        announced = _announce(f"http://{HOST}:{port}/api")
        home = os.environ.get("PREFECT_HOME") or "~/.prefect"
        print(f"Prefect UI on http://{HOST}:{port} (runs stored in {_shown(home)}), report files on {files_url} "
              f"(Ctrl-C stops both). r2n2 commands in this folder use this server while it runs; elsewhere: "
              f"export PREFECT_API_URL=http://{HOST}:{port}/api"
              + ("" if files_url == DEFAULT_FILES_URL else f" R2N2_FILES_URL={files_url}"), file=sys.stderr,
              flush=True)
        while not stop.is_set() and proc.poll() is None:
            stop.wait(0.5)
    finally:
        if announced is not None:
            announced.unlink(missing_ok=True)
        if proc is not None:
            _stop_group(proc)
        httpd.shutdown()
        httpd.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stop.is_set() else proc.returncode
