"""The kernel spec `make venv` installs puts the venv's `bin` first on the kernel's PATH, so
`!shoal status` (and `!pip`) in a notebook run this venv's commands.

The kernel is started from the installed spec itself, as JupyterLab starts it, with a PATH that
lacks the venv's `bin` (as a server started by its full path has).
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from tests.kernel_ext.test_kernel_routing import STARTUP_TIMEOUT_S, run_ok, start_kernel, stop_kernel

pytestmark = pytest.mark.integration

KERNELS_DIR = os.path.join(sys.prefix, "share", "jupyter", "kernels")
VENV_BIN = os.path.join(sys.prefix, "bin")


def _installed_spec() -> dict:
    path = os.path.join(KERNELS_DIR, "python3", "kernel.json")
    assert os.path.exists(path), f"no kernel spec at {path}: `make venv` installs it"
    with open(path) as file:
        return json.load(file)


def test_installed_kernel_spec_puts_the_venvs_bin_first_on_path():
    path = _installed_spec().get("env", {}).get("PATH", "")
    entries = path.split(os.pathsep)
    assert entries[0] == VENV_BIN, f"{path!r}: rebuild the venv (make venv) if it predates this spec"
    assert "${PATH}" in entries[1:], "the kernel keeps the PATH it was started with after the venv's bin"


def test_shoal_command_runs_in_a_kernel_of_that_spec(tmp_path):
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    _installed_spec()
    specs = KernelSpecManager(kernel_dirs=[KERNELS_DIR])
    manager = KernelManager(kernel_name="python3", kernel_spec_manager=specs)
    path = os.pathsep.join(entry for entry in os.environ.get("PATH", "").split(os.pathsep) if entry != VENV_BIN)
    manager, client = start_kernel(str(tmp_path), manager=manager, env={"PATH": path})
    try:
        code = "import os\nprint(os.environ['PATH'].split(os.pathsep)[0])\n!shoal --help"
        cell = run_ok(client, code, STARTUP_TIMEOUT_S)
        text = cell.text(cell.msg_id)
        assert text.startswith(VENV_BIN + "\n"), text
        assert "usage: shoal" in text, cell.summary()
    finally:
        stop_kernel(manager, client)
