"""Lay out the `shoal` package for pyright as a tree of symlinks in build/pyright/shoal/.

setuptools maps `shoal` to runtime/, `shoal.kernel_ext` to kernel_ext/ and `shoal.widgets` to
widgets/ ([tool.setuptools] package-dir); the editable install resolves these through an import
hook that pyright cannot follow. This tree mirrors the same mapping on disk, and [tool.pyright]
extraPaths names build/pyright, so `import shoal` resolves there. It changes nothing about how
shoal is installed or imported at run time. Run from anywhere: `python .ci/pyright_paths.py`.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "pyright"


def package_dirs(pyproject: Path) -> dict[str, Path]:
    """The package -> source folder mapping setuptools installs from."""
    try:
        import tomllib
    except ImportError:
        sys.exit("pyright_paths: needs Python 3.11 or newer (tomllib) to read pyproject.toml")
    with pyproject.open("rb") as file:
        mapping = tomllib.load(file).get("tool", {}).get("setuptools", {}).get("package-dir", {})
    if not mapping or "" in mapping:
        sys.exit(f"pyright_paths: {pyproject} must map named packages in [tool.setuptools] package-dir")
    dirs = {package: ROOT / folder for package, folder in mapping.items()}
    for package, folder in dirs.items():
        if not (folder / "__init__.py").is_file():
            sys.exit(f"pyright_paths: package {package!r} maps to {folder}, which has no __init__.py")
    return dirs


def link(target: Path, source: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(os.path.relpath(source, target.parent))


def build_tree(dirs: dict[str, Path], out: Path) -> None:
    """A package with mapped subpackages becomes a real folder of per-entry links (so a mapped
    subpackage can sit beside its parent's own modules); any other package is one folder link,
    so modules added to it later are seen without rerunning this."""
    for package in sorted(dirs, key=lambda name: name.count(".")):
        target = out.joinpath(*package.split("."))
        source = dirs[package]
        if not any(other.startswith(package + ".") for other in dirs):
            if target.is_symlink():
                target.unlink()  # a same-named entry of the parent's folder: the mapping wins
            link(target, source)
            continue
        target.mkdir(parents=True)
        for entry in sorted(source.iterdir()):
            if entry.name != "__pycache__":
                link(target / entry.name, entry)


def main() -> None:
    dirs = package_dirs(ROOT / "pyproject.toml")
    staging = OUT.with_name(f"{OUT.name}.tmp-{os.getpid()}")
    build_tree(dirs, staging)
    shutil.rmtree(OUT, ignore_errors=True)
    staging.rename(OUT)


if __name__ == "__main__":
    main()
