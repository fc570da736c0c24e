"""Expected failures under Prefect: one paragraph, no traceback; and the retrain lock, taken before any server.

An ``R2N2Error`` (bad params, bad data, failed validation) is the user's to fix, so a traceback only hides the
paragraph that says how. Prefect logs a traceback whenever a task or flow function raises, both to the
terminal and to the run's logs in the UI. Two mechanisms, both switched on by `expected_failures`:

- A flow function *returns* ``Failed(message=<paragraph>, data=<the error>)`` instead of raising: the flow run
  ends Failed with exactly the paragraph as its state message, and Prefect raises the error again where the
  run's result is read (the parent flow, or `run_flow_cli`).
- A task function still raises (a task that returns a state hands that state to its caller instead of
  raising, which would let the flow carry on), and a filter on Prefect's run loggers drops the traceback from
  records whose exception is an R2N2Error. The task run's message is Prefect's "Task run encountered an
  exception DataError: <paragraph>".

A Prefect API that stops answering mid-run (the server was killed, the network went) is expected too: the run
cannot record its states, so the CLI ends it with one paragraph (``ApiLost``, exit 2) instead of Prefect's
connection tracebacks, logs the lost events once instead of once per event, and leaves without waiting for
Prefect's event queue to drain into a server that is gone (minutes of retries otherwise).

Anything else (a bug) raises as before and keeps its traceback. `hold_retrain_lock` needs only filelock, so the
CLI can take it before Prefect is even imported (`import r2n2.errors` still imports torch through
r2n2/__init__.py until that package import is made lazy).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import types
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

from r2n2.errors import R2N2Error
from .startup import run_with_prefect_startup

__all__ = ["ApiLost", "RetrainBusy", "api_lost", "expected_failures", "hide_expected_tracebacks", "hold_retrain_lock",
           "run_flow_cli"]

F = TypeVar("F", bound=Callable[..., Any])
# The engines log a run's exception on these (the adapters from prefect.logging.loggers).
RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs")


class RetrainBusy(R2N2Error):
    """Another retrain holds the workspace lock; this one did nothing (exit 2)."""


class ApiLost(R2N2Error):
    """The Prefect API stopped answering during a run (exit 2); finished stages kept their outputs."""


_LOST = ("ConnectError", "ReadError", "WriteError", "RemoteProtocolError")  # not timeouts: a busy server is alive


def _transport_error(exc: BaseException | None) -> BaseException | None:
    """The httpx / httpcore error in ``exc``'s chain (its cause, or its context unless suppressed) that says the
    server is gone (refused or dropped connections; not a timeout, which a busy live server gives), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if type(exc).__module__.split(".")[0] in ("httpx", "httpcore") and \
                any(c.__name__ in _LOST for c in type(exc).__mro__):
            return exc
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return None


def api_lost(exc: BaseException | None) -> ApiLost | None:
    """An ApiLost paragraph when ``exc`` (or its cause) is a lost connection to the Prefect API, else None."""
    if isinstance(exc, R2N2Error):  # already the user's paragraph
        return None
    cause = _transport_error(exc)
    if cause is None:
        return None
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value() or "its temporary server"
    return ApiLost(f"the Prefect API at {url} stopped answering during the run ({type(cause).__name__}: "
                   f"{str(cause)[:120]}), so the run could not record its states and was stopped. Stages that "
                   "finished kept their outputs (each is written whole or not at all) and a stage cut short left "
                   "its previous outputs; start the server again (`r2n2 ui` in another terminal, or unset "
                   "PREFECT_API_URL for a temporary one) and rerun the same command.")


class _DropExpectedTraceback(logging.Filter):
    """Keep the record, drop its traceback when the exception is an expected R2N2Error or a lost API."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and (isinstance(record.exc_info[1], R2N2Error) or _transport_error(record.exc_info[1])):
            record.exc_info = None
            record.exc_text = None
        return True


class _OnceWhenApiLost(logging.Filter):
    """Prefect logs every event it cannot send with the whole event and its traceback; say it once, briefly."""

    said = False

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        lost = "Unable to connect to 'ws" in text or (record.exc_info and _transport_error(record.exc_info[1]))
        if not lost or ("failed to process item Event(" not in text and "Unable to connect to 'ws" not in text):
            return True
        if _OnceWhenApiLost.said:
            return False
        _OnceWhenApiLost.said = True
        record.msg, record.args, record.exc_info, record.exc_text = (
            "the Prefect API is not answering: this run's events (task states) are not reaching it", (), None, None)
        return True


def hide_expected_tracebacks() -> None:
    """Install the traceback filter on Prefect's task- and flow-run loggers (idempotent; `expected_failures` calls it).

    Logger filters reach every handler, so neither the terminal nor the run's logs in the UI get the traceback.
    """
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropExpectedTraceback) for f in logger.filters):
            logger.addFilter(_DropExpectedTraceback())
    for name in ("prefect._internal.concurrency", "prefect.events.clients"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OnceWhenApiLost) for f in logger.filters):
            logger.addFilter(_OnceWhenApiLost())


def _as_failed_state(fn: Callable[..., Any], exc: R2N2Error):
    """Failed(paragraph) when `fn` is the function of the current flow run; None otherwise (re-raise)."""
    from prefect.context import FlowRunContext
    from prefect.states import Failed

    # The innermost flow run is this function's own (also for a subflow) or not: a task, or a plain call.
    flow_ctx = FlowRunContext.get()
    if flow_ctx is None or getattr(flow_ctx.flow.fn, "__wrapped__", None) is not fn:
        return None  # raise as usual
    # data=exc: Prefect raises it again where the run's result is read (the calling flow, or the CLI).
    return Failed(message=str(exc), data=exc)


def _sync_wrapper(fn: Callable[..., Any]) -> Callable[..., Any]:
    # Everything the wrapper uses is a closure variable: it runs with `fn`'s module globals (see below).
    error, failed_state, hide = R2N2Error, _as_failed_state, hide_expected_tracebacks

    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except error as exc:
            hide()  # again: logging may have been reconfigured since import
            state = failed_state(fn, exc)
            if state is None:
                raise
            return state

    return wrapper


def _async_wrapper(fn: Callable[..., Any]) -> Callable[..., Any]:
    error, failed_state, hide = R2N2Error, _as_failed_state, hide_expected_tracebacks

    async def wrapper(*args, **kwargs):
        try:
            return await fn(*args, **kwargs)
        except error as exc:
            hide()
            state = failed_state(fn, exc)
            if state is None:
                raise
            return state

    return wrapper


def expected_failures(fn: F) -> F:
    """Decorate a task or flow function (below ``@task``/``@flow``) so an R2N2Error fails the run quietly.

    The run ends Failed (a flow run with exactly the error's paragraph as its message) and no traceback
    reaches the terminal or the run's logs; calling the task or flow still raises that R2N2Error. Other
    exceptions propagate unchanged, tracebacks included.
    """
    hide_expected_tracebacks()
    inner = (_async_wrapper if inspect.iscoroutinefunction(fn) else _sync_wrapper)(fn)
    # Prefect validates parameters against string annotations (`from __future__ import annotations`) in the
    # globals of the function it is given, so the wrapper must carry `fn`'s module globals, not this module's.
    wrapper = types.FunctionType(inner.__code__, fn.__globals__, fn.__name__, inner.__defaults__, inner.__closure__)
    return functools.wraps(fn)(wrapper)  # type: ignore[return-value]  # the signature Prefect reads


def run_flow_cli(flow_fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a Prefect flow for the CLI: its return value, or its R2N2Error raised again with a clean traceback.

    The CLI catches R2N2Error and prints only the paragraph (exit 2, or 3 for ValidationFailed). A failure
    that is not an R2N2Error (a bug, a crash) is raised by Prefect as usual, traceback included. A temporary
    server that does not start gets one retry, then a PrefectStartupError (flows/startup.py).
    """
    try:
        state = run_with_prefect_startup(flow_fn, *args, return_state=True, **kwargs)
    except Exception as exc:
        lost = api_lost(exc)
        if lost is not None:
            raise lost from None
        raise
    if state.is_failed():
        exc = state.result(raise_on_failure=False)
        if isinstance(exc, R2N2Error):
            # The traceback accumulated inside Prefect's engine is noise for an expected failure.
            raise exc.with_traceback(None)
        lost = api_lost(exc) if isinstance(exc, BaseException) else None
        if lost is not None:
            raise lost from None
    return state.result()


@contextmanager
def hold_retrain_lock(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the workspace's retrain lock for the block, or raise RetrainBusy at once if another process holds it.

    Enter it in the CLI before importing Prefect or starting a server, so a second retrain costs only Python's
    start-up; enter it again in the retrain flow for runs that skip the CLI (deployments, a monitor's trigger).
    Re-entrant within one process, so the two nest. An OS file lock (filelock): it is released when the
    outermost block ends or the process dies.
    """
    from filelock import FileLock, Timeout

    lock_path = Path(path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    # One lock object per path and process (singleton, not per thread): nested holds count instead of
    # contending, while any other process is refused.
    lock = FileLock(str(lock_path.resolve()), thread_local=False, is_singleton=True)
    try:
        lock.acquire(timeout=0)  # never wait: a second retrain should report and leave
    except Timeout:
        raise RetrainBusy(f"Another retrain is running in this workspace (lock {lock_path} is held), so this one "
                          "did nothing. Wait for it to finish, or if no retrain is running, check for a stuck "
                          "`r2n2 retrain` process.") from None
    try:
        yield lock_path
    finally:
        lock.release()
