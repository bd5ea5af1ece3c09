"""A throwaway PostgreSQL cluster on 127.0.0.1 for the tests: Debian's server, a temporary folder.

Started once per session with `initdb` and `pg_ctl` (as the `postgres` user when the tests run as
root, since the server refuses root), trust authentication on loopback only, and stopped with the
session. Each test gets its own database, so Dagster instances never see another test's runs.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class PostgresServer:
    port: int
    socket_dir: Path
    run_as: list[str]  # the command prefix that runs a server binary as its owner

    def create_database(self, name: str) -> None:
        psql = _binary("psql")
        assert psql is not None
        subprocess.run([*self.run_as, psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        "-d", "postgres", "-c", f'CREATE DATABASE "{name}"'], check=True, capture_output=True)

    def dagster_yaml(self, database: str) -> str:
        """A Dagster instance on this server: runs, events and schedules in ``database``; one training at a time."""
        return (
            "storage:\n  postgres:\n    postgres_db:\n"
            f"      hostname: 127.0.0.1\n      port: {self.port}\n      db_name: {database}\n"
            "      username: postgres\n      password: ''\n"
            # SQLAlchemy 2.1 makes psycopg 3 the default driver; dagster-postgres ships psycopg2.
            "      scheme: postgresql+psycopg2\n"
            "concurrency:\n  pools:\n    default_limit: 1\n"
            "telemetry:\n  enabled: false\n"
        )


def missing() -> str | None:
    """Why no server can be started here, or None."""
    if _binary("initdb") is None or _binary("pg_ctl") is None:
        return "PostgreSQL's server is not installed (apt-get install postgresql)"
    try:
        import dagster_postgres  # noqa: F401
    except ImportError:
        return 'dagster-postgres is not installed (pip install -e ".[postgres]")'
    return None


@contextmanager
def postgres_server(base: Path) -> Iterator[PostgresServer]:
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    assert initdb is not None and pg_ctl is not None
    run_as: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, user="postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", _free_port()
    subprocess.run([*run_as, initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"],
                   check=True, capture_output=True)
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {base} -c fsync=off"
    subprocess.run([*run_as, pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "server.log"), "-w", "start"],
                   check=True, capture_output=True)
    try:
        yield PostgresServer(port=port, socket_dir=base, run_as=run_as)
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
