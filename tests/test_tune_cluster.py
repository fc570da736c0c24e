"""Tuning on a cluster whose study outlives it: trials as Dask tasks on a LocalCluster, the study in a real
PostgreSQL server that this module starts (Debian's initdb / pg_ctl, as the postgres user when run as root)."""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from flows.cli import EXIT_ERROR, main

from .test_tune import tiny  # noqa: F401 - the tiny project fixture

NO_SERVER = "PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql"


def _pg_bin() -> Path | None:
    """The newest Debian server binaries (/usr/lib/postgresql/<major>/bin), else initdb on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    initdb = found[-1] if found else shutil.which("initdb")
    if not initdb or not (Path(initdb).parent / "pg_ctl").is_file():
        return None
    return Path(initdb).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server on a free 127.0.0.1 port with a database `tune`; its URL; stopped after."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip(NO_SERVER)
    # PostgreSQL refuses to run as root: as root (CI, the dev machines) it runs as the postgres user
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    home = Path(tempfile.mkdtemp(prefix="r2n2-pg-"))  # under /tmp, which the postgres user can reach
    if as_user:
        shutil.chown(home, "postgres", "postgres")
    data, port = home / "data", _free_port()

    def run(*cmd, timeout=60):
        return subprocess.run([*as_user, *map(str, cmd)], cwd=home, capture_output=True, text=True, timeout=timeout,
                              check=True)

    try:
        run(bin_dir / "initdb", "-D", data, "-U", "r2n2", "--auth=trust", "-E", "UTF8", "--no-sync")
        # -w -t 30: wait at most 30 s for the server to accept connections; -F: no fsync (a throwaway server)
        run(bin_dir / "pg_ctl", "start", "-D", data, "-l", home / "server.log", "-w", "-t", "30",
            "-o", f"-h 127.0.0.1 -p {port} -k {home} -F", timeout=60)
    except subprocess.CalledProcessError as exc:
        log = (home / "server.log").read_text() if (home / "server.log").is_file() else ""
        shutil.rmtree(home, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {exc.stderr}\n{log}")
    try:
        run(bin_dir / "createdb", "-h", "127.0.0.1", "-p", port, "-U", "r2n2", "tune")
        yield f"postgresql://r2n2@127.0.0.1:{port}/tune"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w", "-t", "30"],
                       cwd=home, capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)


@pytest.mark.slow
def test_tune_runs_4_trials_on_2_dask_workers_into_postgresql(prefect_server, tiny, postgres_url, capsys):  # noqa: F811
    from optuna import load_study
    from optuna.trial import TrialState

    start = time.perf_counter()
    assert main(["tune", "stocks", "--set", "tune.n_trials=4", "--set", "tune.epochs=1", "--set",
                 "tune.dask_workers=2", "--set", f"tune.storage={postgres_url}"]) == 0, capsys.readouterr().err
    print(f"4 trials on 2 Dask workers into PostgreSQL: {time.perf_counter() - start:.1f} s")
    study = load_study(study_name="stocks", storage=postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 4  # one epoch: the median pruner never acts
    best = yaml.safe_load((tiny / "data/tuning/stocks-best.yaml").read_text())
    assert best["stocks.model.cell"] == study.best_params["cell"]
    assert not (tiny / "data/tuning/stocks.db").exists()  # the study is in the server, not in a local file


def test_an_unreachable_database_is_one_paragraph(project, capsys):
    url = f"postgresql://r2n2@127.0.0.1:{_free_port()}/tune"  # nothing listens there
    assert main(["tune", "stocks", "--set", f"tune.storage={url}"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"r2n2 tune: tune.storage: cannot reach the database at postgresql://r2n2@127.0.0.1")
    assert "Traceback" not in err and err.strip().count("\n") == 0
