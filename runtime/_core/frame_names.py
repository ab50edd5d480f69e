"""How the frames of a remote traceback read in IPython: notebook cells by their cell names.

Pure text: takes the traceback's lines, the shell's map from cell file names to execution
counts and a `getline` (the driver's linecache); no IPython import here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

_FRAME = re.compile(r'^(\s*)File "([^"]+)", line (\d+)(.*)$')
_REMOTE_CELL = re.compile(r"^<remote-cell-(\d+)>$")
# What `warnings` prints: "FILE:LINE: CATEGORY: message" (`warnings.formatwarning`).
_WARNING = re.compile(r"^(.+?):(\d+): ([A-Za-z_]\w*Warning): ", re.MULTILINE)


def cell_name(filename: str, cell_numbers: Mapping[str, int]) -> str | None:
    """`Cell In[N]` for the file of a notebook cell (a `%%remote` cell or a cell's own file)."""
    match = _REMOTE_CELL.match(filename)
    if match:
        return f"Cell In[{match.group(1)}]"
    number = cell_numbers.get(filename)
    return f"Cell In[{number}]" if number is not None else None


def name_cell_frames(
    lines: list[str], cell_numbers: Mapping[str, int], getline: Callable[[str, int], str]
) -> list[str]:
    """Frames in cells read `Cell In[N], line L, in f`, as IPython shows local ones.

    A frame that came without its source line (the worker could not read the file: a cell
    defined in this kernel, a file on another machine) gets it from `getline` here.
    """
    named: list[str] = []
    for index, line in enumerate(lines):
        match = _FRAME.match(line)
        if match is None:
            named.append(line)
            continue
        indent, filename, lineno, rest = match.groups()
        name = cell_name(filename, cell_numbers)
        named.append(f"{indent}{name}, line {lineno}{rest}" if name else line)
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if not following.startswith(indent + "  ") or _FRAME.match(following):
            source = getline(filename, int(lineno)).strip()
            if source:
                named.append(f"{indent}  {source}")
    return named


def name_warning_locations(text: str, cell_numbers: Mapping[str, int]) -> str:
    """Warnings printed at a notebook cell's file read `Cell In[N], line L: UserWarning: ...`.

    A worker prints a warning with the file its code came from, which for a function defined
    in a notebook is the kernel's hidden file for that cell; other lines are left as they are.
    """

    def rename(match: re.Match) -> str:
        name = cell_name(match.group(1), cell_numbers)
        if name is None:
            return match.group(0)
        return f"{name}, line {match.group(2)}: {match.group(3)}: "

    return _WARNING.sub(rename, text)


__all__ = ["cell_name", "name_cell_frames", "name_warning_locations"]
