"""The browser tier: a real JupyterLab server and Debian's chromium driven by Playwright.

One server per test module (the leak check runs per module), on 127.0.0.1 at a free port with
a token, with private Jupyter config, data, runtime, settings and workspace dirs and this venv's
kernel (JUPYTER_PATH), serving copies of the tutorials; it is stopped by its PID (its kernels
first, through its REST API).
One chromium per module, one page per test. `make test` installs chromium when it is missing (`make browser`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
START_TIMEOUT_S = 90
STOP_TIMEOUT_S = 20

# Settings a person would not change but a test needs: every cell in the page (no windowing), no
# news or update pop-ups over the screenshots.
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


@dataclass
class Lab:
    """A running JupyterLab: its URL, token, the folder it serves and its process."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen
    log: Path

    def api(self, method: str, path: str) -> object:
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _answers(lab: Lab) -> bool:
    if lab.process.poll() is not None:
        raise AssertionError(f"JupyterLab exited with {lab.process.returncode}:\n{lab.log_tail()}")
    try:
        lab.api("GET", "/api/status")
    except OSError:
        return False
    return True


def _stop(lab: Lab) -> None:
    """Kernels first (so their clusters go with them), then the server by its PID."""
    try:
        for kernel in lab.api("GET", "/api/kernels") or []:
            lab.api("DELETE", f"/api/kernels/{kernel['id']}")
    except OSError:
        pass
    if lab.process.poll() is None:
        lab.process.send_signal(signal.SIGTERM)
        try:
            lab.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(lab.process.pid, signal.SIGKILL)  # its own session: the group is its and its kernels'
            lab.process.wait(STOP_TIMEOUT_S)


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    home = tmp_path_factory.mktemp("jupyter")
    root = home / "work"
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    for name, values in SETTINGS.items():
        path = home / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("JUPYTER", "SHOAL_"))}
    env.update(
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        JUPYTER_PATH=str(Path(sys.prefix) / "share" / "jupyter"),  # this venv's python3 kernel first
        IPYTHONDIR=str(home / "ipython"),
        PYTHONPATH=str(ROOT),
    )
    token = secrets.token_hex(16)
    port = _free_port()
    log = home / "lab.log"
    command = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0",
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run commands as the menus do
    ]  # fmt: skip
    if os.geteuid() == 0:
        command.append("--allow-root")
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    running = Lab(f"http://127.0.0.1:{port}", token, root, process, log)
    try:
        wait_for(lambda: _answers(running), START_TIMEOUT_S, describe=running.log_tail)
        yield running
    finally:
        _stop(running)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium (make test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-crash-reporter"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="session")
def screenshots_dir() -> Path | None:
    """Where `make screenshots` wants the gallery (SHOAL_SCREENSHOTS_DIR), else None."""
    where = os.environ.get("SHOAL_SCREENSHOTS_DIR")
    if not where:
        return None
    path = Path(where)
    path.mkdir(parents=True, exist_ok=True)
    return path
