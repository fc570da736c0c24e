"""DVC does the work of a pipeline task: `reproduce_stage` asks DVC (its Python API, in this process) to reproduce
one stage of dvc.yaml alone (``--single-item``): DVC decides whether it is up to date, runs its command
(`r2n2 <stage> <case>`, a child process) when it is not, records dvc.lock and caches the outputs, exactly as
`dvc repro` would. One DVC import for the whole flow instead of one `dvc` process per stage (28 of them).

The child's log lines and, on failure, its closing paragraph and exit code reach the task through two files
named by ``R2N2_STAGE_LOG`` (the `r2n2` command writes them when the variable is set, and then runs the stage
plainly, never as a Prefect flow of its own): the task hands the lines to the run logger, so the Prefect UI shows
the stage's log, and raises the same error the command printed, so the UI shows the same one paragraph.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from r2n2.errors import ConfigError, DataError, R2N2Error, ValidationFailed

__all__ = ["STAGE_LOG_ENV", "StageOutcome", "check_project", "reproduce_stage", "stale_stages"]

STAGE_LOG_ENV = "R2N2_STAGE_LOG"
EXIT_VALIDATION = 3
EXIT_INTERRUPTED = (130, 143)  # the stage command was stopped by SIGINT / SIGTERM
# Called with the stage's exit code when it was interrupted, before KeyboardInterrupt is raised here (the `r2n2`
# command registers its handler, which silences Prefect's noise and keeps the terminal for its closing paragraph).
INTERRUPT_HOOKS: list[Callable[[int], None]] = []


class StageOutcome:
    """What DVC did with one stage: ``ran`` (False: up to date, skipped) and the seconds it took."""

    def __init__(self, name: str, ran: bool, seconds: float):
        self.name, self.ran, self.seconds = name, ran, seconds

    @property
    def message(self) -> str:
        if self.ran:
            return f"{self.name}: reproduced by DVC in {self.seconds:.1f} s (dvc.lock updated)"
        return f"{self.name}: up to date (DVC skipped it: its code, data and params are unchanged)"


def check_project(root: Path = Path(".")) -> None:
    """A paragraph unless ``root`` is a DVC project whose dvc.yaml the pipeline can drive."""
    if not (root / ".dvc").is_dir():
        raise ConfigError(f"{root.resolve().name or root} is not a DVC project (no .dvc folder): the pipeline has DVC "
                          "run and record each stage. Run `make init` (or `git init && dvc init`) in the project "
                          "folder, then rerun the same command.")
    if not (root / "dvc.yaml").is_file():
        raise ConfigError("this project has no dvc.yaml: write it from the stage table with `r2n2 dvc-yaml`, then "
                          "rerun the same command.")


@contextmanager
def _stage_log(log: Callable[[str], None]) -> Iterator[Path]:
    """A file the child appends its log lines to, forwarded to ``log`` as they come (a reader thread)."""
    fd, name = tempfile.mkstemp(prefix="r2n2-stage-", suffix=".log")
    os.close(fd)
    path = Path(name)
    done = threading.Event()

    def forward() -> None:
        with open(path, encoding="utf-8", errors="replace") as f:
            while True:
                line = f.readline()
                if line:
                    if line.strip():
                        log(line.rstrip("\n"))
                    continue
                if done.is_set():
                    return
                time.sleep(0.1)

    reader = threading.Thread(target=forward, name="r2n2-stage-log", daemon=True)
    reader.start()
    old = os.environ.get(STAGE_LOG_ENV)
    os.environ[STAGE_LOG_ENV] = str(path)  # DVC hands the child a copy of this process's environment
    try:
        yield path
    finally:
        if old is None:
            os.environ.pop(STAGE_LOG_ENV, None)
        else:
            os.environ[STAGE_LOG_ENV] = old
        done.set()
        reader.join(timeout=10)
        for p in (path, _error_file(path)):
            p.unlink(missing_ok=True)


def _error_file(log_path: Path) -> Path:
    return log_path.with_name(log_path.name + ".error.json")


def write_stage_error(message: str, code: int) -> bool:
    """Called by the `r2n2` command run under a pipeline task: its closing paragraph and exit code (True), or
    False when no task is listening."""
    target = os.environ.get(STAGE_LOG_ENV)
    if target:
        _error_file(Path(target)).write_text(json.dumps({"message": message, "code": code}))
    return bool(target)


def append_stage_log(line: str) -> bool:
    """Called by the `r2n2` command run under a pipeline task: one log line for the task's run log (True), or
    False when no task is listening."""
    target = os.environ.get(STAGE_LOG_ENV)
    if target:
        with open(target, "a", encoding="utf-8") as f:
            f.write(line.rstrip("\n") + "\n")
    return bool(target)


def stale_stages(root: Path = Path(".")) -> set[str]:
    """The stages of ``root``'s dvc.yaml that DVC's status finds changed (code, data, params, command or a missing
    output), from one pass over all of them: `dvc status`. A stage not in it, and downstream of no stage that
    reruns in the same pipeline run, is up to date without asking DVC again."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {str(k).rsplit(":", 1)[-1] for k in repo.status()}


def reproduce_stage(name: str, log: Callable[[str], None], root: Path = Path(".")) -> StageOutcome:
    """``dvc repro --single-item <name>`` in this process: what DVC did, or the stage's own error."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    import logging

    # DVC's hint to `git add dvc.lock`, once per stage, would fill the run log; README says what to commit
    logging.getLogger("dvc.repo.scm_context").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    with _stage_log(log) as log_path:
        try:
            with Repo(str(root)) as repo:
                done = repo.reproduce(name, single_item=True)
        except DvcException as exc:
            failure = _error_file(log_path)
            if failure.is_file():
                err = json.loads(failure.read_text())
                if err["code"] in EXIT_INTERRUPTED:  # Ctrl-C reached the stage (DVC ignores it here meanwhile)
                    for hook in INTERRUPT_HOOKS:
                        hook(err["code"])
                    raise KeyboardInterrupt from None
                if err["code"] == EXIT_VALIDATION:  # the summary is in the stage's validation.json
                    raise ValidationFailed(err["message"], {}) from None
                raise DataError(err["message"]) from None
            raise R2N2Error(f"`dvc repro --single-item {name}` failed: {_dvc_message(exc)}") from None
    return StageOutcome(name, bool(done), time.perf_counter() - t0)


def _dvc_message(exc: BaseException) -> str:
    parts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "; ".join(p for p in parts if p)[:500]
