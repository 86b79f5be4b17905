"""Real-browser and real-Jupyter-server helpers for the browser tests.

Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright for Python; no browser is
ever downloaded. Jupyter servers (jupyter server, JupyterLab, Voila) run as child processes
on free ports of 127.0.0.1 with a random token, a fresh runtime/config/workspace directory
each, and are stopped at the end of the test.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .faults import free_port

CHROMIUM = os.environ.get("LIVENB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[1]


def need_chromium() -> None:
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (.[test])")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")


@contextmanager
def chromium() -> Iterator[object]:
    """A headless Chromium (Playwright Browser) from Debian's package."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


class JupyterProcess:
    """``jupyter <app>`` on a free port with a token, in a private set of directories."""

    def __init__(self, app: str, *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.home = Path(tempfile.mkdtemp(prefix="livenb-jupyter-"))
        settings = self.home / "settings"
        notification = settings / "@jupyterlab" / "apputils-extension"
        notification.mkdir(parents=True)
        # No news pop-up, no update check (both would reach out to the network).
        (notification / "notification.jupyterlab-settings").write_text(
            '{"fetchNews": "false", "checkForUpdates": false}'
        )
        environment = {
            **os.environ,
            "JUPYTER_RUNTIME_DIR": str(self.home / "runtime"),
            "JUPYTER_CONFIG_DIR": str(self.home / "config"),
            "JUPYTERLAB_WORKSPACES_DIR": str(self.home / "workspaces"),
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            **(env or {}),
        }
        self.log = (self.home / "server.log").open("w")
        launcher = ["voila"] if app == "voila" else ["jupyter", app]
        command = [sys.executable, "-m", *launcher, *args, "--no-browser", f"--port={self.port}"]
        if app == "voila":  # a standalone app with options of its own
            command += ["--Voila.ip=127.0.0.1", f"--token={self.token}"]
        else:
            command += ["--ip=127.0.0.1", f"--ServerApp.token={self.token}"]
            if os.geteuid() == 0:  # Jupyter refuses root without it (CI runs as root)
                command.append("--allow-root")
        self.proc = subprocess.Popen(
            command, cwd=cwd, env=environment, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.base = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"jupyter exited early:\n{self.read_log()}")
            try:
                with urllib.request.urlopen(f"{self.base}{path}", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"jupyter not ready in {timeout} s:\n{self.read_log()}")

    def wait_listening(self, timeout: float) -> None:
        """Wait until the server accepts TCP connections (for apps with no cheap page)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.proc.args} exited early:\n{self.read_log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"not listening in {timeout} s:\n{self.read_log()}")

    def read_log(self) -> str:
        self.log.flush()
        return (self.home / "server.log").read_text()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        self.log.close()
        shutil.rmtree(self.home, ignore_errors=True)
