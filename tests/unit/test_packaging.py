"""The distribution as a user gets it, and the README's quick start.

The wheel is built from a copy of the sources (so no build/ or egg-info lands in the checkout)
and installed with `--no-deps` into a fresh venv. That venv sees its dependencies through a
`.pth` file naming this interpreter's site-packages, which holds them but not an importable
shoal (the editable install's finder is activated by a `.pth` file of its own, and `.pth` files
in a directory added that way are not processed). Each check runs from a temp directory outside
the repository with PYTHONPATH unset, so `import shoal` can only find the wheel's copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib

REPO_ROOT = Path(__file__).resolve().parents[2]
QUICK_START_OUTPUT = "[0, 1, 4, 9]"
QUICK_START_TIMEOUT_S = 60
WHEEL_TIMEOUT_S = 300


def readme_quick_start(readme_text: str) -> str:
    """The first ```python block of README.md (the quick start), cut at its closing fence.

    The block opens with a line that is exactly ```python and closes at the next line that is
    exactly ```; an unclosed block runs to the end of the file.
    """
    lines = readme_text.splitlines()
    try:
        start = lines.index("```python") + 1
    except ValueError:
        return ""
    end = lines.index("```", start) if "```" in lines[start:] else len(lines)
    return "\n".join(lines[start:end]) + "\n"


def _clean_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "PYTHONHOME")}


def _run(command: list, timeout_s: float, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, env=_clean_env(), **kwargs)


def _explain(completed: subprocess.CompletedProcess) -> str:
    return f"exit {completed.returncode}\n--- stdout\n{completed.stdout}\n--- stderr\n{completed.stderr}"


def _package_dirs() -> dict[str, str]:
    with open(REPO_ROOT / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["tool"]["setuptools"]["package-dir"]


def _source_packages() -> set[str]:
    """Dotted names of every folder with an __init__.py under the mapped source folders."""
    packages = set()
    for package, folder in _package_dirs().items():
        root = REPO_ROOT / folder
        for init in root.rglob("__init__.py"):
            relative = init.parent.relative_to(root).parts
            if not any(part in ("__pycache__", "node_modules") for part in relative):
                packages.add(".".join((package, *relative)))
    return packages


@dataclass(frozen=True)
class InstalledWheel:
    wheel: Path
    venv: Path
    python: Path
    workdir: Path


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> InstalledWheel:
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO_ROOT / name).exists():
            shutil.copy2(REPO_ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "node_modules", "build", "dist")
    for folder in set(_package_dirs().values()):
        shutil.copytree(REPO_ROOT / folder, source / folder, ignore=ignore)

    dist = base / "dist"
    built = _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", dist, source], 240, cwd=base)
    assert built.returncode == 0, "python -m build failed: " + _explain(built)
    (wheel,) = dist.glob("shoal-*.whl")

    venv = base / "venv"
    created = _run([sys.executable, "-m", "venv", "--without-pip", venv], 60, cwd=base)
    assert created.returncode == 0, _explain(created)
    python = venv / "bin" / "python"
    installed = _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel], 120, cwd=base
    )
    assert installed.returncode == 0, "pip install of the wheel failed: " + _explain(installed)

    dependency_dirs = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
    venv_site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], 30, cwd=base)
    assert venv_site.returncode == 0, _explain(venv_site)
    Path(venv_site.stdout.strip(), "_shoal_test_dependencies.pth").write_text("\n".join(dependency_dirs) + "\n")

    workdir = base / "work"
    workdir.mkdir()
    return InstalledWheel(wheel=wheel, venv=venv, python=python, workdir=workdir)


@pytest.mark.timeout(WHEEL_TIMEOUT_S)
def test_wheel_holds_every_package_and_nothing_else(installed_wheel):
    with zipfile.ZipFile(installed_wheel.wheel) as archive:
        names = archive.namelist()
    in_wheel = {os.path.dirname(name).replace("/", ".") for name in names if name.endswith("/__init__.py")}
    missing = sorted(_source_packages() - in_wheel)
    assert missing == [], "packages missing from the wheel: list them under [tool.setuptools] packages"
    top_level = {name.split("/", 1)[0] for name in names}
    assert top_level == {"shoal", f"shoal-{installed_wheel.wheel.name.split('-')[1]}.dist-info"}


@pytest.mark.timeout(WHEEL_TIMEOUT_S)
def test_wheel_imports_outside_the_repository(installed_wheel):
    completed = _run(
        [installed_wheel.python, "-c", "import shoal; print(shoal.__file__)"], 60, cwd=installed_wheel.workdir
    )
    assert completed.returncode == 0, _explain(completed)
    shoal_file = Path(completed.stdout.strip()).resolve()
    assert shoal_file.is_relative_to(installed_wheel.venv.resolve()), shoal_file
    assert not shoal_file.is_relative_to(REPO_ROOT), shoal_file


@pytest.mark.timeout(WHEEL_TIMEOUT_S)
def test_console_script_answers_help(installed_wheel):
    script = installed_wheel.venv / "bin" / "shoal"
    assert script.exists(), "the wheel declares no `shoal` console script"
    completed = _run([script, "--help"], 60, cwd=installed_wheel.workdir)
    assert completed.returncode == 0, _explain(completed)
    assert completed.stdout.strip(), "shoal --help printed nothing"


@pytest.mark.integration
@pytest.mark.timeout(WHEEL_TIMEOUT_S)
def test_installed_wheel_runs_the_quick_start(installed_wheel):
    code = readme_quick_start((REPO_ROOT / "README.md").read_text())
    completed = _run([installed_wheel.python, "-"], QUICK_START_TIMEOUT_S, input=code, cwd=installed_wheel.workdir)
    assert completed.returncode == 0, _explain(completed)
    assert completed.stdout.splitlines()[-1:] == [QUICK_START_OUTPUT], _explain(completed)


def test_readme_has_a_quick_start():
    code = readme_quick_start((REPO_ROOT / "README.md").read_text())
    assert "import shoal as ray" in code
    assert f"# {QUICK_START_OUTPUT}" in code, "the README should show the output it promises"


@pytest.mark.integration
def test_readme_quick_start_prints_its_output(tmp_path):
    code = readme_quick_start((REPO_ROOT / "README.md").read_text())
    completed = _run([sys.executable, "-"], QUICK_START_TIMEOUT_S, input=code, cwd=tmp_path)
    assert completed.returncode == 0, _explain(completed)
    assert completed.stdout.splitlines()[-1:] == [QUICK_START_OUTPUT], _explain(completed)
