"""requirements.lock: exact pins that satisfy pyproject.toml, torch's CPU build, and a venv that holds
exactly what it was built from.

`make venv` copies the lock into .venv/requirements.txt and `make test-latest` resolves
.venv-latest/requirements.txt; the last test compares the running environment with that file,
so it holds in either.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import sysconfig
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK = REPO_ROOT / "requirements.lock"
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)$")
# Installed in every venv by `python -m venv` (pip) or by make itself (shoal, editable), not by the lock.
NOT_FROM_REQUIREMENTS = {"pip", "shoal"}


def read_pins(path: Path) -> dict[str, Version]:
    """Package name (canonical) to pinned version, for a file of `name==version` lines and comments.

    Raises:
        AssertionError: a line that is neither a comment nor an exact pin.
    """
    pins = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"{path.name}:{number} is not an exact pin (name==version): {line!r}"
        pins[canonicalize_name(match["name"])] = Version(match["version"])
    return pins


def _pyproject_requirements() -> dict[str, list[Requirement]]:
    with open(REPO_ROOT / "pyproject.toml", "rb") as handle:
        project = tomllib.load(handle)["project"]
    groups = {"dependencies": project["dependencies"]}
    groups.update((f"[{extra}]", specs) for extra, specs in project.get("optional-dependencies", {}).items())
    return {group: [Requirement(spec) for spec in specs] for group, specs in groups.items()}


def test_lock_pins_every_package_exactly():
    pins = read_pins(LOCK)
    assert len(pins) > 50, f"{LOCK.name} pins only {sorted(pins)}"


def test_lock_satisfies_every_requirement_of_pyproject():
    pins = read_pins(LOCK)
    problems = []
    for group, requirements in _pyproject_requirements().items():
        for requirement in requirements:
            if requirement.marker is not None and not requirement.marker.evaluate():
                continue
            pinned = pins.get(canonicalize_name(requirement.name))
            if pinned is None:
                problems.append(f"{group} {requirement}: not in the lock")
            elif not requirement.specifier.contains(pinned, prereleases=True):
                problems.append(f"{group} {requirement}: the lock pins {pinned}")
    assert problems == [], "pyproject.toml and requirements.lock disagree (run `make lock`):\n" + "\n".join(problems)


def test_lock_takes_torch_cpu_build_and_no_cuda_packages():
    pins = read_pins(LOCK)
    assert pins.get("torch") is not None and pins["torch"].local == "cpu", f"torch: {pins.get('torch')}"
    cuda = sorted(name for name in pins if name.startswith("nvidia-") or name == "triton")
    assert cuda == [], f"the lock pulls CUDA packages: {cuda}"


def test_environment_holds_exactly_its_requirements():
    built_from = Path(sys.prefix) / "requirements.txt"
    assert built_from.exists(), f"{sys.prefix} was not built by `make venv` or `make test-latest` (no {built_from})"
    wanted = read_pins(built_from)
    site_dirs = sorted({sysconfig.get_paths()[key] for key in ("purelib", "platlib")})
    installed = {
        canonicalize_name(dist.metadata["Name"]): Version(dist.version)
        for dist in importlib.metadata.distributions(path=site_dirs)
    }
    for name in NOT_FROM_REQUIREMENTS:
        installed.pop(name, None)
    missing_or_other = {name: (version, installed.get(name)) for name, version in wanted.items()}
    missing_or_other = {name: pair for name, pair in missing_or_other.items() if pair[0] != pair[1]}
    extra = sorted(set(installed) - set(wanted))
    assert missing_or_other == {}, f"wanted vs installed in {sys.prefix}: {missing_or_other}"
    assert extra == [], f"{sys.prefix} holds packages {built_from.name} does not (installed by hand?): {extra}"
