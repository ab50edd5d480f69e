"""`interrupts.user_traceback`: an interrupt's traceback keeps the cell's frames and cuts shoal's.

Real tracebacks through real modules written to a temporary folder: one plays shoal's code, one
the shell's magic machinery. The kernel tests show the result in a real ipykernel.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest
from shoal.kernel_ext.interrupts import user_traceback


def _module(path, name: str, source: str):
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_code(tmp_path):
    """(shoal-like module, shell-like module, their folders), removed from sys.modules after."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "shell").mkdir()
    library = _module(tmp_path / "lib" / "waiting.py", "fake_waiting", "def wait():\n    raise KeyboardInterrupt\n")
    shell = _module(tmp_path / "shell" / "magic.py", "fake_magic", "def run_cell_magic(body):\n    return body()\n")
    yield library, shell, (str(tmp_path / "lib") + os.sep,), (str(tmp_path / "shell") + os.sep,)
    sys.modules.pop("fake_waiting", None)
    sys.modules.pop("fake_magic", None)


def _names(tb) -> list[str]:
    names = []
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    return names


def run_code(body):
    return body()  # plays IPython's run_code, the first frame, which IPython's tracebacks skip


def _interrupt_of(cell):
    """The traceback of the interrupt `cell` raises, from `run_code` on (as IPython hands it)."""
    try:
        run_code(cell)
    except KeyboardInterrupt as interrupt:
        return interrupt.__traceback__.tb_next
    raise AssertionError("no interrupt")


def test_frames_from_shoals_first_one_on_are_cut(fake_code):
    library, _, shoal_dirs, shell_dirs = fake_code

    def cell():
        library.wait()

    tb = _interrupt_of(cell)
    assert _names(tb)[-1] == "wait"
    trimmed = user_traceback(tb, shoal_dirs, shell_dirs)
    assert _names(trimmed) == ["run_code", "cell"]
    assert _names(tb)[-1] == "wait", "the original traceback is left as it was"


def test_a_magic_line_and_the_machinery_under_it_are_cut_too(fake_code):
    library, shell, shoal_dirs, shell_dirs = fake_code

    def cell():
        shell.run_cell_magic(library.wait)

    tb = _interrupt_of(cell)
    trimmed = user_traceback(tb, shoal_dirs, shell_dirs)
    assert _names(trimmed) == ["run_code"]


def test_an_interrupt_in_the_users_own_code_is_left_alone(fake_code):
    _, _, shoal_dirs, shell_dirs = fake_code

    def cell():
        raise KeyboardInterrupt

    tb = _interrupt_of(cell)
    assert user_traceback(tb, shoal_dirs, shell_dirs) is tb
