"""The `r2n2` command: every stage from the shell, reading params.yaml with dotted `--set` overrides.

Stage commands run the pure stage function directly, or as a Prefect flow run (visible in the UI) when
PREFECT_API_URL is set or `--prefect` is given. `pipeline`, `retrain`, `monitor`, `serve` and `tune` always
use Prefect. Expected failures (bad params, bad data, failed validation) print one paragraph and exit
non-zero with no traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from r2n2.errors import ConfigError, R2N2Error, ValidationFailed

from .dvcrun import INTERRUPT_HOOKS, STAGE_LOG_ENV, append_stage_log, write_stage_error
from .failures import ApiLost

for _var, _val in (("PREFECT_SERVER_ANALYTICS_ENABLED", "false"), ("DVC_NO_ANALYTICS", "1"),
                   ("GX_ANALYTICS_ENABLED", "false")):
    os.environ.setdefault(_var, _val)


def _pin_openblas_kernel() -> None:
    """One OpenBLAS kernel for numpy and scipy on every x86-64 CPU with AVX2 (set before numpy loads; a value in
    the environment wins). OpenBLAS picks its kernel by CPU, and kernels round differently in the last bits: on
    this project's AMD EPYC, numpy 2.4.6's OpenBLAS picks SkylakeX, and the stocks report's test statistics move
    by ~1e-15, the volatility report's GJR-GARCH-t numbers by up to 1e-4; Haswell gives the committed bytes
    (2026-12-05, docs/reproducibility.md)."""
    import platform

    if "OPENBLAS_CORETYPE" in os.environ or platform.machine() not in ("x86_64", "AMD64"):
        return
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return
    if " avx2" in flags:  # Haswell's kernel needs AVX2
        os.environ["OPENBLAS_CORETYPE"] = "Haswell"


_pin_openblas_kernel()


# Commands whose torch work runs in this process (training, scoring); the others never wait on OpenMP threads.
_COMPUTE_COMMANDS = {"train", "baselines", "finetune", "evaluate", "seeds", "retrain", "replay", "tune", "predict",
                     "monitor"}


def _openmp_wait_policy(argv: list[str]) -> None:
    """Idle OpenMP threads sleep (``OMP_WAIT_POLICY=PASSIVE``) when other work keeps this machine's cores busy as
    a computing command starts; set before torch loads its libgomp. With libgomp's default a thread that finds
    no work spins up to 300,000 times: beside a busy core the two torch threads take turns spinning on the one
    free core, and a sentiment epoch took 3.0x its quiet time (PASSIVE: 1.07x). On a quiet machine PASSIVE costs
    about a quarter (threads sleep and wake at every operation), so it is chosen only when a 0.1 s sample finds
    at least half a core busy (psutil). The policy decides how threads wait, not how sums split: the bytes are
    the same either way (benchmarks/threads.py compares them; docs/scale.md). A value in the environment wins;
    ``GOMP_SPINCOUNT`` set alone is kept too; an empty ``OMP_WAIT_POLICY`` means libgomp's default."""
    if os.environ.get("OMP_WAIT_POLICY") == "":
        del os.environ["OMP_WAIT_POLICY"]
        return
    if "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return
    if next((a for a in argv[1:] if not a.startswith("-")), None) not in _COMPUTE_COMMANDS:
        return
    import psutil

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    percent = psutil.cpu_percent(interval=0.1, percpu=True)
    if sum(percent[i] for i in cores if i < len(percent)) / 100 >= 0.5:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


_openmp_wait_policy(sys.argv)

PREFECT_HOME_DIR = ".prefect"  # the project's Prefect home: its run history, read by `r2n2 ui` / `make ui`
UI_FILE = "ui.json"            # written there by a running `r2n2 ui`: its API URL and process id
_USER_API_URL = os.environ.get("PREFECT_API_URL")  # as the user set it, before a running `r2n2 ui` is found


def _project_prefect() -> None:
    """Runs are stored in the project: ``PREFECT_HOME`` is ``.prefect/`` beside params.yaml (unless the user set
    PREFECT_HOME or PREFECT_API_URL), so the temporary server of `make run` and the server of `r2n2 ui` read and
    write one database, and the UI shows every run made in this folder. While `r2n2 ui` runs here, commands talk
    to it (its URL from .prefect/ui.json) instead of starting a temporary server beside it on the same database.
    Set before Prefect is imported."""
    if "PREFECT_HOME" in os.environ or _USER_API_URL or not Path("params.yaml").is_file():
        return
    home = Path(PREFECT_HOME_DIR).resolve()
    os.environ["PREFECT_HOME"] = str(home)
    try:
        import json

        ui = json.loads((home / UI_FILE).read_text())
        os.kill(int(ui["pid"]), 0)  # still running
        os.environ["PREFECT_API_URL"] = str(ui["api_url"])
    except (OSError, ValueError, KeyError, TypeError):
        pass


_project_prefect()

EXIT_ERROR = 2
EXIT_VALIDATION = 3


def _commands():
    """``flows.commands``, imported once the environment above is pinned: it loads numpy, pandas and the case
    registry (the one place this module imports its own project's code inside a function)."""
    from . import commands

    return commands


def _parser() -> argparse.ArgumentParser:
    return _commands().parser()


def dispatch(args) -> str | tuple[str, int]:
    args.user_api_url = _USER_API_URL  # PREFECT_API_URL as the user set it: a stage then runs as a flow run
    return _commands().run(args)


def _file_overrides(files: list[str]) -> list[str]:
    import yaml

    out = []
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise ConfigError(f"--set-file {f} does not exist.")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"--set-file {f} must hold a mapping of dotted keys to values.")
        out += [f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
                for k, v in data.items()]
    return out


_ENDED_WITHOUT_API: list[bool] = []
_CONSOLE: list[bool] = []  # set by `entry`: this process is the `r2n2` command, not a caller of `main`


def _last_words():
    """A stream on the terminal's stderr for the closing paragraph, after pointing file descriptor 2 (and so
    every other writer in this process) at /dev/null: Prefect's background log and event workers, still
    retrying the dead server, printed "All connection attempts failed" after the paragraph (seen 2026-12-05 in
    tests/test_flow_failures.py's dead-server test), so the paragraph was not the last line. The paragraph starts
    on a line of its own: a thread that wrote half a line just before (its text reached the terminal, its newline
    /dev/null) ran into it (CI, 2026-12-06)."""
    real = os.fdopen(os.dup(2), "w")  # no flush first: a half-written line of another thread goes to /dev/null
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    real.write("\n")
    return real


def entry() -> None:
    """The `r2n2` console command: ``main``'s exit code. After a lost Prefect API it leaves at once: Prefect's
    exit handlers would otherwise retry every queued run event against the dead server for minutes (measured: a
    pipeline whose server was killed mid-run had not exited 90 s after printing its error)."""
    _CONSOLE.append(True)
    for signum in EXIT_SIGNAL:
        signal.signal(signum, _on_signal)

    INTERRUPT_HOOKS.append(interrupted_by)
    code = main()
    if _ENDED_WITHOUT_API:
        try:  # a temporary server of this process: stop it (os._exit skips the exit handler that would)
            from prefect.server.api.server import SubprocessASGIServer

            for server in list(getattr(SubprocessASGIServer, "_instances", {}).values()):
                server.stop()
        except Exception:  # noqa: BLE001 - leaving is what matters here
            pass
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    try:
        if getattr(args, "set_files", None):
            args.overrides = _file_overrides(args.set_files) + args.overrides  # explicit --set wins
        message = dispatch(args)
    except ValidationFailed as exc:
        if not _stage_error(str(exc), EXIT_VALIDATION):
            print(f"r2n2 {args.command}: {exc}", file=sys.stderr)
        return EXIT_VALIDATION
    except KeyboardInterrupt:
        return _interrupted_exit(args.command)
    except R2N2Error as exc:
        if _INTERRUPTED:  # the signal also stopped the temporary server: the interruption is the news
            return _interrupted_exit(args.command)
        if _stage_error(str(exc), EXIT_ERROR):  # the pipeline task says it, once
            return EXIT_ERROR
        out = sys.stderr
        if isinstance(exc, ApiLost):  # see `entry`: nothing is left to hand to a server that is gone
            _ENDED_WITHOUT_API.append(True)
            if _CONSOLE:
                out = _last_words()
        print(f"r2n2 {args.command}: {exc}", file=out, flush=True)
        return EXIT_ERROR
    finally:
        if "torch" in sys.modules:  # launched by torchrun: leave the process group cleanly
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()
    message, code = message if isinstance(message, tuple) else (message, 0)  # `verify` exits 1 when a number moved
    print(message)
    if message:
        append_stage_log(str(message).splitlines()[0])
    return code


# -- interrupts: Ctrl-C (SIGINT) and SIGTERM end in one paragraph ------------------------------------------------
_INTERRUPTED: list[int] = []   # the signal that stopped this command
_SILENCED: list = []           # the terminal's stderr, kept for the closing paragraph once fd 2 is silenced
EXIT_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


def _stage_children() -> list:
    """This process's descendants but Prefect's temporary server: the stage command DVC runs for a pipeline task.
    (The server stays up so that the run's Crashed state reaches the UI; Prefect stops it when we leave.)"""
    import psutil

    out = []
    for child in psutil.Process().children(recursive=True):
        try:
            line = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "prefect.server" not in line and "uvicorn" not in line:
            out.append(child)
    return out


def _silence() -> None:
    """From now on nothing but the closing paragraph reaches the terminal: Prefect's event and log workers, whose
    server may have died with the same signal, would dump their retries and "Finished in state Running()"."""
    if _CONSOLE and not _SILENCED:
        sys.stderr.flush()
        _SILENCED.append(_last_words())


def _on_signal(signum: int, frame) -> None:
    """SIGINT / SIGTERM: the stage command under way (a DVC child) gets the same signal and puts its previous
    outputs back; this process stops with KeyboardInterrupt. During a flow run Prefect handles SIGTERM first (it
    marks the task and flow runs Crashed, then hands the signal on to this handler)."""
    first = not _INTERRUPTED
    _INTERRUPTED.append(signum)
    if first:
        import psutil

        children = _stage_children()
        for child in children:
            try:
                child.send_signal(signum)
            except psutil.Error:
                pass
        psutil.wait_procs(children, timeout=60)  # each puts its previous outputs back before it exits
        _silence()
    raise KeyboardInterrupt


def interrupted_by(code: int) -> None:
    """A stage command ended by a signal (exit 130 / 143) under a pipeline task: this command is interrupted too."""
    signum = {v: k for k, v in EXIT_SIGNAL.items()}.get(code, signal.SIGINT)
    if not _INTERRUPTED:
        _INTERRUPTED.append(signum)
        _silence()


def _interrupted_exit(command: str) -> int:
    signum = _INTERRUPTED[0] if _INTERRUPTED else signal.SIGINT
    code = EXIT_SIGNAL.get(signum, 130)
    if os.environ.get(STAGE_LOG_ENV):  # a stage under a pipeline task: the task says it
        write_stage_error("interrupted", code)
        return code
    name = signal.Signals(signum).name
    paragraph = (f"r2n2 {command}: interrupted ({name}). Stages that had finished kept their outputs (and, under "
                 "`make run` / `r2n2 pipeline`, their dvc.lock entries); the interrupted stage put its previous "
                 "outputs back. Rerun the same command to go on: DVC reruns only what is not up to date, and "
                 "training resumes from its last finished epoch.")
    _ENDED_WITHOUT_API.append(True)  # leave at once: Prefect's exit handlers would retry a dead server for minutes
    out = _SILENCED[0] if _SILENCED else (_last_words() if _CONSOLE else sys.stderr)
    print(paragraph, file=out, flush=True)
    return code


def _stage_error(message: str, code: int) -> bool:
    """Under a pipeline task, the closing paragraph and exit code go to the task, which says them (True)."""
    return write_stage_error(message, code)


if __name__ == "__main__":
    entry()
