"""Fixtures for end-to-end tests: a real `dagster dev` on a free port, its GraphQL API, a browser.

`dagster dev` is started in its own process group and ended firmly (SIGTERM to the group, then
SIGKILL): it ignores SIGTERM for a while and leaves a webserver, a daemon and code servers behind,
which would hold the port and the instance's SQLite files after a failed test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

READY_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GraphQLError(RuntimeError):
    """The webserver answered a GraphQL request with errors."""


class DagsterDev:
    """A running `dagster dev -m <module>`; its log goes to a file the failure messages quote."""

    def __init__(self, cwd: Path, env: dict[str, str], log_path: Path, module: str = "llm_assets") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(self.port), "-m", module],
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Until /server_info answers and the code location has loaded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self._process.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/server_info", timeout=5).ok and self.location_name():
                    return
            except (requests.ConnectionError, requests.Timeout, GraphQLError):
                pass
            time.sleep(1.0)
        raise TimeoutError(f"dagster dev not ready at {self.url} after {timeout:.0f} s:\n{self.log_tail()}")

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        if body.get("errors"):
            raise GraphQLError(str(body["errors"]))
        return body["data"]

    def location_name(self) -> str | None:
        """The loaded code location holding the repository, or None while it is still loading."""
        data = self.graphql(
            "{ repositoriesOrError { __typename ... on RepositoryConnection"
            " { nodes { name location { name } } } } }"
        )
        nodes = data["repositoriesOrError"].get("nodes") or []
        return nodes[0]["location"]["name"] if nodes else None

    def stop(self, grace: float = 5.0) -> None:
        if self._process.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(self._process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self._process.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # Children the webserver started outlive it in the group: make sure none is left.
        try:
            os.killpg(self._process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._log.close()


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    """Debian's chromium (installed by .ci/run) or the browser named by $CHROMIUM."""
    candidates = [os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.skip("no Chromium: `apt-get install chromium`, or set CHROMIUM to a Chrome/Chromium binary")


@pytest.fixture
def screenshot_dir(tmp_path: Path) -> Path:
    """$LLM_ASSETS_SCREENSHOTS when set (CI keeps it), else the test's temporary folder."""
    folder = Path(os.environ.get("LLM_ASSETS_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def start_dagster_dev() -> Iterator:
    """Start `dagster dev` (ready when returned); every server started is stopped after the test."""
    servers: list[DagsterDev] = []

    def start(cwd: Path, env: dict[str, str], log_path: Path) -> DagsterDev:
        server = DagsterDev(cwd, env, log_path)
        servers.append(server)
        server.wait_ready()
        return server

    yield start
    for server in servers:
        server.stop()
