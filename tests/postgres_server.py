"""A real PostgreSQL for the tests: Debian's binaries (scripts/setup.sh installs ``postgresql``), a temporary
data folder, a free 127.0.0.1 port, its socket in that folder; stopped and removed at the end.

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` user the package made
(``runuser``). Each test takes a database of its own (``database``), so tests share one server.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from server.harness import free_port

__all__ = ("PostgresServer", "binaries", "leader_sessions", "postgres")


def binaries() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl``: the newest Debian cluster version, else the PATH's."""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True):
        if Path(folder, "initdb").is_file() and Path(folder, "pg_ctl").is_file():
            return Path(folder)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    return Path(pg_ctl).parent if initdb and pg_ctl else None


class PostgresServer:
    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="drylocal-pg-"))
        self.port = free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            user = "postgres" if _user_exists("postgres") else "nobody"
            entry = pwd.getpwnam(user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            self._as_user = ["runuser", "-u", user, "--"]

    def start(self) -> PostgresServer:
        data = self.root / "data"
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", "drylocal", "-E", "UTF8", "--no-sync")
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(data), "-o", options, "-l", str(self.root / "log"), "-w", "-t", "60", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://drylocal@127.0.0.1:{self.port}/{database}"

    def database(self) -> str:
        """A new, empty database; its URL."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self._as_user, str(self.bin_dir / tool), *args], capture_output=True, text=True)
        if done.returncode != 0:
            log = (self.root / "log").read_text() if (self.root / "log").is_file() else ""
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout}{done.stderr}{log[-2000:]}")


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server per test module; skipped only where no PostgreSQL is installed."""
    bin_dir = binaries()
    if bin_dir is None:
        pytest.skip("no PostgreSQL binaries (scripts/setup.sh installs Debian's postgresql)")
    pytest.importorskip("psycopg", reason="the postgres extra (psycopg) is not installed")
    server = PostgresServer(bin_dir)
    try:
        yield server.start()
    finally:
        server.stop()


def leader_sessions(url: str, end: bool = False) -> list[tuple[int, str]]:
    """(backend pid, application name) of the campaign sessions holding drylocal's leader lock; ``end``: end
    them first, as a PostgreSQL restart would (then: those ended)."""
    import psycopg

    from engine.leader import APPLICATION_NAME
    from engine.postgres import LEADER_LOCK

    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT a.pid, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.objid = %s AND l.granted AND a.application_name LIKE %s",
            (LEADER_LOCK & 0xFFFFFFFF, APPLICATION_NAME + "%"),
        ).fetchall()
        for pid, _ in rows if end else ():
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    return [(pid, name) for pid, name in rows]
