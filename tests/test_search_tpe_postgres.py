"""jopt.search.tpe scaled out: worker processes sharing one study on a real PostgreSQL server.

The server is started with pytest-postgresql's executor (``pg_ctl initdb`` and ``pg_ctl
start`` on a free port of 127.0.0.1). PostgreSQL refuses to run as root, and tests (CI
included) may run as root: then ``pg_ctl`` runs as the ``postgres`` user (created by the
Debian package), through ``runuser``, on a data folder that user owns. No server binaries,
or a server that does not start, fail the test with what to install: it is never skipped.
"""

import contextlib
import glob
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

import optuna
import port_for
import pytest
from test_search_tpe import _finished, _worker

from jopt.search.tpe import REQUEUED_ATTR

try:
    from pytest_postgresql.executors import PostgreSQLExecutor
except ImportError:  # pytest-postgresql < 7
    from pytest_postgresql.executor import PostgreSQLExecutor

# pytest-postgresql starts pg_ctl with a preexec_fn, which runs JAX's fork warning; the child
# execs pg_ctl at once, so the warning does not apply
pytestmark = pytest.mark.filterwarnings("ignore:os.fork\\(\\) was called:RuntimeWarning")

INSTALL = (
    "install the PostgreSQL server (Debian: apt-get install postgresql; .ci/run does) and "
    "pip install -e '.[test]' (pytest-postgresql, psycopg)"
)


def _pg_ctl() -> str:
    """``pg_ctl`` on the PATH, else the newest of Debian's ``/usr/lib/postgresql/*/bin``."""
    found = shutil.which("pg_ctl")
    if found:
        return found
    version = lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=version)
    if not candidates:
        pytest.fail(f"no pg_ctl on the PATH nor in /usr/lib/postgresql/*/bin: {INSTALL}.")
    return candidates[-1]


def _as_postgres_user(pg_ctl: str, folder: Path) -> str:
    """A ``pg_ctl`` that runs as the ``postgres`` user, for a root process; chowns ``folder``."""
    import pwd

    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail(
            f"running as root, and there is no 'postgres' user to run the server: {INSTALL}."
        )
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.fail("running as root, and there is no runuser to start the server as 'postgres'.")
    os.chown(folder, user.pw_uid, user.pw_gid)
    wrapper = Path(tempfile.mkdtemp(prefix="jopt-pg-ctl-")) / "pg_ctl"  # root's, 0700
    # from a folder the postgres user may enter: the server's tools refuse an unreadable one
    wrapper.write_text(
        f'#!/bin/sh\ncd "{folder}" && exec "{runuser}" -u postgres -- "{pg_ctl}" "$@"\n'
    )
    wrapper.chmod(0o700)
    return str(wrapper)


def _fast_folder() -> str | None:
    """A memory file system with room for a data folder (~40 MB), else the temp folder.

    On disk, creating and deleting the data folder's ~1000 files takes seconds.
    """
    try:
        if shutil.disk_usage("/dev/shm").free > 512 * 2**20:
            return "/dev/shm"
    except OSError:
        pass
    return None


@pytest.fixture(scope="module")
def postgres_url():
    """A SQLAlchemy URL of a fresh PostgreSQL server on 127.0.0.1, stopped after the module."""
    pg_ctl = _pg_ctl()
    folder = Path(tempfile.mkdtemp(prefix="jopt-pg-", dir=_fast_folder()))
    executable = _as_postgres_user(pg_ctl, folder) if os.geteuid() == 0 else pg_ctl
    port = port_for.select_random()
    executor = PostgreSQLExecutor(
        executable=executable,
        host="127.0.0.1",
        port=port,
        datadir=str(folder / "data"),
        unixsocketdir=str(folder),
        logfile=str(folder / "server.log"),
        startparams="-w",
        dbname="postgres",
        user="postgres",
        postgres_options="-c listen_addresses=127.0.0.1 -c fsync=off",
    )

    def remove():
        shutil.rmtree(folder, ignore_errors=True)
        if executable != pg_ctl:
            shutil.rmtree(Path(executable).parent, ignore_errors=True)

    try:
        executor.start()
    except Exception as error:
        log = folder / "server.log"
        tail = log.read_text()[-2000:] if log.exists() else "(no server log)"
        with contextlib.suppress(Exception):  # a server that started but did not answer
            executor.stop()
        remove()
        pytest.fail(f"PostgreSQL ({pg_ctl}) did not start: {error!r}\n{tail}\n{INSTALL}.")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        executor.stop()
        remove()


def test_three_workers_on_postgres_one_killed_mid_batch(tmp_path, postgres_url):
    name, n_trials = "scale-out", 24
    (tmp_path / "ready").mkdir()
    together = f"{tmp_path / 'ready'}:3"  # all three start at once on a database with no tables
    # the first batch of each worker is full (3 x 4 < n_trials): the victim dies inside its
    # first batch, after telling 2 of its 4 trials, and leaves 2 RUNNING
    victim = _worker(tmp_path, postgres_url, name, n_trials, kill_after=2, together=together)
    survivors = [
        _worker(tmp_path, postgres_url, name, n_trials, pause=0.02, together=together)
        for _ in range(2)
    ]
    outputs = {}

    def wait(process):  # reaps each worker as it ends, so its pid is gone for the others
        outputs[process.pid] = process.communicate(timeout=120)

    threads = [threading.Thread(target=wait, args=(p,)) for p in [victim, *survivors]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert victim.returncode == -9, outputs[victim.pid][1][-3000:]
    evaluated = []
    for process in survivors:
        out, err = outputs[process.pid]
        assert process.returncode == 0, err[-3000:]
        evaluated.append(json.loads(out.strip().splitlines()[-1])["evaluated"])

    study = optuna.load_study(study_name=name, storage=postgres_url)
    assert _finished(study) == (n_trials, 0)  # exactly n_trials, no parameter set twice
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    requeued = [t for t in complete if REQUEUED_ATTR in t.user_attrs]
    assert len(requeued) == 2  # the victim's RUNNING trials, reclaimed and run by a survivor
    assert sum(evaluated) == n_trials - 2  # the victim told 2, the survivors all the rest
