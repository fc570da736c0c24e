"""Prefect's temporary server on a busy machine: a generous start-up timeout, one retry, then one paragraph.

Without PREFECT_API_URL, Prefect starts a temporary ("ephemeral") API server in a subprocess the first time a
client is needed: `get_client` calls `SubprocessASGIServer.start` (prefect/server/api/server.py), which waits
``server.ephemeral.startup_timeout_seconds`` (env PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS; Prefect's
default 20 s) for ``/api/health`` and otherwise raises ``RuntimeError("Timed out while attempting to connect to
ephemeral Prefect API server. ...")``. On a loaded small machine the server's own start-up (imports, database
migrations) can take longer than that.

`run_with_prefect_startup` runs a flow call so that:

- the timeout is STARTUP_TIMEOUT_S unless the user set it (environment, profile, prefect.toml, .env: anything
  Prefect counts as set), and the client retries a request CLIENT_MAX_RETRIES times unless the user set that;
- on that RuntimeError it stops the half-started server (Prefect leaves its process running, and a second
  start would reuse its port), prints one notice line and runs the call once more;
- on a second one it raises PrefectStartupError, an R2N2Error: the CLI prints its paragraph and exits 2.

The retry repeats nothing: Prefect raises this error while the flow engine creates its API client, before the
flow run exists and before the flow function runs (tests/test_startup.py checks that the body never ran). Once
the server answers, `start` is a no-op for the rest of the process, so a flow that has started cannot fail
this way. Any other exception propagates unchanged, without a retry.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator, TypeVar

from r2n2.errors import R2N2Error, truncate

__all__ = ["STARTUP_TIMEOUT_S", "PrefectStartupError", "is_startup_timeout", "run_with_prefect_startup",
           "startup_timeout"]

T = TypeVar("T")
STARTUP_TIMEOUT_S = 90  # measured (docs/operations.md): 3-7 s idle, 32 s with three busy loops on one core
# Prefect retries a request to an unreachable API 5 times with exponential backoff (~60 s each request; a
# pipeline whose server was killed took 3 min to end). Three retries (~14 s) ride out a stall of a busy server
# and still end a dead run within a minute or so.
CLIENT_MAX_RETRIES = 3
ENV_VAR = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
_PREFECT_MESSAGE = "Timed out while attempting to connect to ephemeral Prefect API server"


class PrefectStartupError(R2N2Error):
    """Prefect's temporary server did not start twice in a row; nothing ran (exit 2)."""


def is_startup_timeout(exc: BaseException) -> bool:
    """True for exactly the error `SubprocessASGIServer.start` raises when the server does not answer in time."""
    return type(exc) is RuntimeError and str(exc).startswith(_PREFECT_MESSAGE)


def _user_set_timeout() -> bool:
    from prefect.settings import get_current_settings

    ephemeral = get_current_settings().server.ephemeral  # model_fields_set: what a source (not a default) gave
    return ENV_VAR in os.environ or "startup_timeout_seconds" in ephemeral.model_fields_set


@contextmanager
def startup_timeout() -> Iterator[int]:
    """Within the block, the temporary server's start-up timeout is STARTUP_TIMEOUT_S unless the user set one.

    Yields the timeout in effect (seconds).
    """
    from prefect.settings import (PREFECT_CLIENT_MAX_RETRIES, PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
                                  get_current_settings, temporary_settings)

    updates = {}
    if not ("PREFECT_CLIENT_MAX_RETRIES" in os.environ or
            "max_retries" in get_current_settings().client.model_fields_set):
        updates[PREFECT_CLIENT_MAX_RETRIES] = CLIENT_MAX_RETRIES
    timeout = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value() if _user_set_timeout() else STARTUP_TIMEOUT_S
    updates[PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS] = timeout
    with temporary_settings(updates=updates):
        yield timeout


def _stop_failed_server() -> None:
    """Stop the process of a temporary server that failed to start; a running server (a test harness's) is kept."""
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()  # the process's default instance (port None), as get_client uses
    if not server.running:
        server.stop()  # terminates its process and forgets the instance, so a retry starts afresh on a free port


def _paragraph(timeout: int, exc: RuntimeError) -> str:
    detail = str(exc).removeprefix(_PREFECT_MESSAGE).lstrip(". ")
    return (f"Prefect's temporary server did not start within {timeout} s, twice (one retry), so nothing ran; "
            "on a busy machine its start-up can take longer than that"
            + (f" (Prefect: {truncate(detail, 160)})" if detail else "") + ". Start a server that stays up: "
            "run `r2n2 ui` in another terminal, then `export PREFECT_API_URL=http://127.0.0.1:4200/api` in this "
            f"shell and rerun the command (or allow more time with {ENV_VAR}=<seconds>).")


def run_with_prefect_startup(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` (a flow call) with the start-up timeout above and one retry of a failed start-up.

    Raises PrefectStartupError when the temporary server fails to start on both attempts.
    """
    with startup_timeout() as timeout:
        for attempt in (1, 2):
            try:
                return fn(*args, **kwargs)
            except RuntimeError as exc:
                if not is_startup_timeout(exc):
                    raise
                _stop_failed_server()
                if attempt == 2:
                    raise PrefectStartupError(_paragraph(timeout, exc)) from exc
            print(f"r2n2: Prefect's temporary server did not start within {timeout} s; trying once more.",
                  file=sys.stderr, flush=True)
    raise AssertionError("unreachable")  # pragma: no cover
