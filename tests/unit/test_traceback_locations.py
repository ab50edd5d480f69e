"""Functions shipped by value keep their file and line numbers, whatever cloudpickle does.

cloudpickle 3.1.3 renames the file of every code object it pickles to "<dynamic-code>"; shoal
sends code objects whole, so a worker's traceback still points at the user's file. Each check
loads the definition in a fresh interpreter (as a worker does), with the installed cloudpickle
and with the oldest one pyproject.toml allows.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.version import Version
from shoal._core import frame_names, serialization

ROOT = Path(__file__).resolve().parents[2]

# Runs in a fresh interpreter: loads the definition from stdin, calls it, prints the traceback.
LOADER = """
import sys, traceback, cloudpickle
from shoal._core import serialization
target = serialization.load_definition(sys.stdin.buffer.read())
print("cloudpickle", cloudpickle.__version__)
try:
    target().method() if isinstance(target, type) else target(2)
except Exception:
    traceback.print_exc(file=sys.stdout)
"""


def failing_function(x):
    def inner():
        raise ValueError(f"bad {x}")  # the line the traceback must name

    return inner()


class FailingClass:
    def method(self):
        raise KeyError("from a method")


def _line_of(text: str) -> int:
    source = Path(__file__).read_text().splitlines()
    return next(number for number, line in enumerate(source, 1) if text in line)


def _load_elsewhere(payload: bytes, pythonpath: str | None = None) -> str:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-c", LOADER], input=payload, capture_output=True, env=env, timeout=60, cwd="/"
    )
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def _pickle_elsewhere(pythonpath: str) -> bytes:
    """Pickle `failing_function` with the cloudpickle on `pythonpath`, in its own interpreter."""
    script = (
        f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
        "from tests.unit import test_traceback_locations as here\n"
        "from shoal._core import serialization\n"
        "sys.stdout.buffer.write(serialization.pickle_definition(here.failing_function)[1])\n"
    )
    env = {**os.environ, "PYTHONPATH": pythonpath + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, env=env, timeout=60, cwd="/")
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def _assert_points_here(traceback_text: str) -> None:
    assert "<dynamic-code>" not in traceback_text
    line = _line_of("# the line the traceback must name")
    assert f'File "{__file__}", line {line}, in inner' in traceback_text, traceback_text
    assert f'File "{__file__}", line {_line_of("return inner()")}, in failing_function' in traceback_text


def test_a_function_keeps_its_file_and_lines():
    _, payload = serialization.pickle_definition(failing_function)
    _assert_points_here(_load_elsewhere(payload))


def test_a_class_keeps_its_file_and_lines():
    _, payload = serialization.pickle_definition(FailingClass)
    text = _load_elsewhere(payload)
    assert f'File "{__file__}", line {_line_of("from a method")}, in method' in text, text


def test_a_lambda_inside_a_value_keeps_its_file():
    value = serialization.serialize({"f": lambda: 1 / 0}).to_bytes()
    code = serialization.deserialize_bytes(value)["f"].__code__
    assert code.co_filename == __file__
    assert code.co_firstlineno == _line_of('serialization.serialize({"f": lambda: 1 / 0})')


def _oldest_allowed_cloudpickle() -> str:
    import tomllib  # 3.11+, as is the suite

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in dependencies if re.match(r"cloudpickle\b", d))
    match = re.search(r">=\s*([\w.]+)", spec)
    assert match, f"pyproject.toml gives cloudpickle no lower bound: {spec!r}"
    return match.group(1)


@pytest.fixture(scope="module")
def oldest_cloudpickle(tmp_path_factory) -> tuple[str, str]:
    version = _oldest_allowed_cloudpickle()
    target = tmp_path_factory.mktemp("cloudpickle-oldest")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            f"cloudpickle=={version}",
        ],
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode()
    return version, str(target)


def test_with_the_oldest_allowed_cloudpickle(oldest_cloudpickle):
    version, path = oldest_cloudpickle
    text = _load_elsewhere(_pickle_elsewhere(path), path)
    loaded = re.search(r"^cloudpickle (\S+)$", text, re.M)
    assert loaded and Version(loaded.group(1)) == Version(version), text  # it really ran with the old one
    _assert_points_here(text)


def test_cell_frames_read_as_ipython_shows_them():
    lines = [
        "shoal::f() (pid=1, ip=127.0.0.1)",
        '  File "<ipython-input-4-abc>", line 3, in f',
        '  File "<remote-cell-7>", line 2, in <module>',
        "    total = f(1)",
        '  File "/elsewhere/lib.py", line 10, in helper',
        "ValueError: bad",
    ]
    sources = {("<ipython-input-4-abc>", 3): "    raise ValueError('bad')\n", ("/elsewhere/lib.py", 10): "  go()\n"}
    named = frame_names.name_cell_frames(lines, {"<ipython-input-4-abc>": 4}, lambda f, n: sources.get((f, n), ""))
    assert named == [
        "shoal::f() (pid=1, ip=127.0.0.1)",
        "  Cell In[4], line 3, in f",
        "    raise ValueError('bad')",
        "  Cell In[7], line 2, in <module>",
        "    total = f(1)",
        '  File "/elsewhere/lib.py", line 10, in helper',
        "    go()",
        "ValueError: bad",
    ]


def test_warnings_printed_at_a_cell_file_name_the_cell():
    from shoal._core.frame_names import name_warning_locations

    numbers = {"/tmp/ipykernel_1/123.py": 11}
    text = "/tmp/ipykernel_1/123.py:3: UserWarning: drop the get()\n/usr/lib/x.py:9: DeprecationWarning: old\n"
    assert name_warning_locations(text, numbers) == (
        "Cell In[11], line 3: UserWarning: drop the get()\n/usr/lib/x.py:9: DeprecationWarning: old\n"
    )
