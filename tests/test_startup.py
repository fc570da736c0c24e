"""Prefect's temporary server on a busy machine (flows/startup.py): a generous start-up timeout unless the user set
one, one retry of a start-up that timed out, then one paragraph and exit 2.

The server is starved with PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=0 (Prefect's setting is an integer,
so 0 rather than a fraction): Prefect then gives up at once, deterministically, on any machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flows import startup
from flows.startup import (ENV_VAR, STARTUP_TIMEOUT_S, PrefectStartupError, is_startup_timeout,
                           run_with_prefect_startup)

ROOT = Path(__file__).resolve().parents[1]
PREFECT_TIMEOUT = "Timed out while attempting to connect to ephemeral Prefect API server."
# Prefect's own log lines on stderr: "18:27:54.980 | INFO    | prefect - Starting temporary server on ..." and
# the "See https://www.prefect.io/docs/..." line that continues that record.
PREFECT_LOG = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \| |^See https://www\.prefect\.io/docs/")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (ENV_VAR, "PREFECT_API_URL")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


@pytest.mark.parametrize("command", [
    ["pipeline", "stocks"],  # the fast tier keeps one command; the others are the same path (slow tier)
    pytest.param(["replay", "stocks", "--start", "2016-01-04", "--end", "2016-02-01"], marks=pytest.mark.slow),
    pytest.param(["monitor", "stocks", "--no-retrain"], marks=pytest.mark.slow),
    pytest.param(["tune", "stocks"], marks=pytest.mark.slow),
], ids=lambda c: c[0])
def test_starved_server_retries_then_one_paragraph(project, command):
    proc = subprocess.run([sys.executable, "-m", "flows.cli", *command], cwd=project, env=_env(**{ENV_VAR: "0"}),
                          capture_output=True, text=True, timeout=120)
    err = proc.stderr
    assert proc.returncode == 2, err
    assert "Traceback" not in err and proc.stdout == "", err
    assert err.count("Starting temporary server") == 2, err  # the first attempt and one retry
    ours = [line for line in err.splitlines() if not PREFECT_LOG.match(line)]
    assert ours[0] == "r2n2: Prefect's temporary server did not start within 0 s; trying once more.", err
    assert len(ours) == 2, err  # the notice, then exactly one paragraph (one line) and nothing else
    paragraph = ours[1]
    assert paragraph.startswith(f"r2n2 {command[0]}: Prefect's temporary server did not start within 0 s"), err
    assert "`r2n2 ui` in another terminal" in paragraph, err
    assert "export PREFECT_API_URL=http://127.0.0.1:4200/api" in paragraph, err
    assert not (project / "data").exists()  # nothing ran, on either attempt


FLOW = textwrap.dedent("""
    import sys
    from pathlib import Path

    from prefect import flow

    from flows.failures import run_flow_cli
    from flows.startup import PrefectStartupError

    @flow(persist_result=False)
    def side_effect():
        with open("body-ran.txt", "a") as f:
            f.write("ran\\n")
        return 1

    try:
        run_flow_cli(side_effect)
    except PrefectStartupError as exc:
        print("PrefectStartupError", file=sys.stderr)
    print("body runs:", Path("body-ran.txt").read_text().count("ran") if Path("body-ran.txt").exists() else 0)
""")


def test_retry_never_repeats_the_flow_body(tmp_path):
    """The start-up error comes before the flow function runs: neither attempt runs the body."""
    proc = subprocess.run([sys.executable, "-c", FLOW], cwd=tmp_path, env=_env(**{ENV_VAR: "0"}),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "body runs: 0", proc.stdout + proc.stderr
    assert "PrefectStartupError" in proc.stderr and proc.stderr.count("Starting temporary server") == 2, proc.stderr


SHOW_TIMEOUT = ("from flows.startup import startup_timeout\n"
                "from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as S\n"
                "with startup_timeout() as t:\n    print(t, S.value())\n")


@pytest.mark.parametrize("env,files,expected", [
    ({}, {}, STARTUP_TIMEOUT_S),  # nobody set it: the CLI's default, not Prefect's 20 s
    ({ENV_VAR: "7"}, {}, 7),  # the user's environment
    ({ENV_VAR: "20"}, {}, 20),  # set to Prefect's default is still set
    ({}, {"prefect.toml": "[server.ephemeral]\nstartup_timeout_seconds = 33\n"}, 33),
    ({}, {"home/profiles.toml": f'active = "busy"\n[profiles.busy]\n{ENV_VAR} = 44\n'}, 44),
], ids=["default", "env", "env-prefect-default", "prefect.toml", "profile"])
def test_user_set_timeout_is_kept(tmp_path, env, files, expected):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    if (tmp_path / "home").is_dir():
        env = {**env, "PREFECT_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-c", SHOW_TIMEOUT], cwd=tmp_path, env=_env(**env), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(expected), str(expected)]


def test_user_set_timeout_in_process_settings_is_kept():
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as S
    from prefect.settings import temporary_settings

    with temporary_settings(updates={S: 5}), startup.startup_timeout() as t:
        assert t == 5 and S.value() == 5


class Flaky:
    """A flow call stand-in: raises the given errors in turn, then returns 'done'."""

    def __init__(self, *errors: BaseException):
        self.errors, self.calls = list(errors), 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


@pytest.fixture
def stops(monkeypatch):
    calls = []
    monkeypatch.setattr(startup, "_stop_failed_server", lambda: calls.append(1))
    return calls


def test_one_retry_then_success(stops, capsys):
    fn = Flaky(RuntimeError(PREFECT_TIMEOUT))
    assert run_with_prefect_startup(fn, 1, return_state=True) == "done"
    assert fn.calls == 2 and len(stops) == 1
    assert "trying once more" in capsys.readouterr().err


def test_two_timeouts_give_one_paragraph(stops, capsys):
    fn = Flaky(RuntimeError(PREFECT_TIMEOUT), RuntimeError(PREFECT_TIMEOUT + " Ephemeral server process exited "
                                                                              "with code 1."))
    with pytest.raises(PrefectStartupError) as info:
        run_with_prefect_startup(fn)
    assert fn.calls == 2 and len(stops) == 2
    msg = str(info.value)
    assert "\n" not in msg and "`r2n2 ui`" in msg and "PREFECT_API_URL=http://127.0.0.1:4200/api" in msg
    assert "(Prefect: Ephemeral server process exited with code 1.)" in msg
    assert capsys.readouterr().err.count("trying once more") == 1


@pytest.mark.parametrize("error", [RuntimeError("Timed out waiting for the database"), ValueError(PREFECT_TIMEOUT),
                                   KeyboardInterrupt()])
def test_other_errors_are_not_retried(stops, error):
    fn = Flaky(error)
    with pytest.raises(type(error)):
        run_with_prefect_startup(fn)
    assert fn.calls == 1 and not stops
    assert not is_startup_timeout(error)
