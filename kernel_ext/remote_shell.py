"""`get_ipython()` inside a remote cell: shell escapes and the few magics that run on a worker.

The kernel turns `!cmd`, `x = !cmd`, `%magic` and `%%magic` lines into `get_ipython().system(...)`,
`.getoutput(...)`, `.run_line_magic(...)` and `.run_cell_magic(...)` calls before the cell is
sent (`magics`), and checks there that every magic is in `LINE_MAGICS` / `CELL_MAGICS`. On the
worker there is no IPython shell: `RemoteShell` implements those calls itself. Runs on workers;
IPython is optional there.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import time
import timeit

from . import cell_display

__all__ = ["CELL_MAGICS", "LINE_MAGICS", "RemoteMagicError", "RemoteShell", "unsupported_magic_message"]

LINE_MAGICS = frozenset({"time", "timeit", "system", "sx", "matplotlib"})
CELL_MAGICS = frozenset({"bash", "sh", "time", "timeit"})

_DOLLAR_NAME = re.compile(r"\$(\$|\{[^}]*\}|[A-Za-z_]\w*)")


class RemoteMagicError(RuntimeError):
    """A magic that cannot run in a `%%remote` cell."""


def unsupported_magic_message(name: str, cell: bool = False) -> str:
    """What to tell a user whose `%%remote` cell uses magic `name`."""
    prefix = "%%" if cell else "%"
    if name in ("pinfo", "pinfo2", "psearch"):
        return "`?` help cannot run in a %%remote cell: ask for help in a local cell"
    supported = ", ".join(
        [f"%{magic}" for magic in sorted(LINE_MAGICS)] + [f"%%{magic}" for magic in sorted(CELL_MAGICS)]
    )
    return (
        f"{prefix}{name} cannot run in a %%remote cell: the cell runs on a worker, which has no "
        f"IPython shell; run it in a local cell. Supported there: !cmd, x = !cmd, {supported}"
    )


class SList(list):
    """The lines of `x = !cmd`; IPython's SList essentials when IPython is not on the worker."""

    @property
    def s(self) -> str:
        return " ".join(self)

    @property
    def n(self) -> str:
        return "\n".join(self)

    @property
    def l(self) -> list:  # noqa: E743 - IPython's name
        return list(self)

    def grep(self, pattern: str, prune: bool = False) -> SList:
        matcher = re.compile(pattern)
        return SList(line for line in self if bool(matcher.search(line)) != prune)

    def fields(self, *indexes: int) -> SList:
        rows = [line.split() for line in self]
        if not indexes:
            return SList(" ".join(row) for row in rows)
        return SList(" ".join(row[i] for i in indexes if -len(row) <= i < len(row)) for row in rows)


def _slist(lines: list[str]):
    try:
        from IPython.utils.text import SList as IPythonSList
    except ImportError:
        return SList(lines)
    return IPythonSList(lines)


class RemoteShell:
    """What `get_ipython()` returns in a remote cell.

    Args:
        namespace: The cell's globals: `$name` and `{expr}` in commands expand from them (and from
            the calling function's locals), and `%time` statements run in them.
    """

    def __init__(self, namespace: dict) -> None:
        self.user_ns = namespace

    # ------------------------------------------------------------------------ shell escapes

    def var_expand(self, command: str, depth: int = 0) -> str:
        """IPython's expansion of `$name`, `${expr}`/`{expr}` and `$$` in a shell command.

        `depth` counts the frames between the caller of this method and the user's code.
        """
        frame = sys._getframe(depth + 2)
        names = {**self.user_ns, **frame.f_locals}
        try:
            from IPython.utils.text import DollarFormatter
        except ImportError:
            return _DOLLAR_NAME.sub(lambda m: _dollar(m.group(1), names), command)
        try:
            return DollarFormatter().vformat(command, args=[], kwargs=names)
        except Exception:  # as IPython does: a command that does not expand runs as written
            return command

    def system(self, command: str) -> None:
        """`!cmd`: run `command` in a shell on the worker; its output streams into the cell.

        The exit code is in `_exit_code` afterwards, as in IPython.
        """
        command = self.var_expand(command)
        sys.stdout.flush()
        process = subprocess.Popen(
            command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        assert process.stdout is not None  # a pipe
        try:
            for raw in iter(process.stdout.readline, b""):
                sys.stdout.write(raw.decode(errors="replace"))
            self.user_ns["_exit_code"] = process.wait()
        finally:
            _stop(process)

    def getoutput(self, command: str, split: bool = True, depth: int = 0):
        """`x = !cmd`: the command's output (stdout and stderr) as a list of lines (an SList)."""
        command = self.var_expand(command, depth=depth)
        process = subprocess.Popen(
            command, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            output, _ = process.communicate()
        finally:
            _stop(process)
        text = output.decode(errors="replace")
        return _slist(text.splitlines()) if split else text

    # ------------------------------------------------------------------------------ magics

    def run_line_magic(self, magic_name: str, line: str, _stack_depth: int = 1):
        """`%magic line` in a remote cell; only `LINE_MAGICS` run, others raise RemoteMagicError."""
        if magic_name not in LINE_MAGICS:
            raise RemoteMagicError(unsupported_magic_message(magic_name))
        if magic_name in ("system", "sx"):
            return self.getoutput(line, depth=1)
        if magic_name == "matplotlib":
            return None  # figures are always sent to the cell as PNG
        if magic_name == "time":
            return self._time(line)
        return self._timeit(line)

    def run_cell_magic(self, magic_name: str, line: str, cell: str):
        """`%%magic` at the top of a remote cell's body; only `CELL_MAGICS` run."""
        if magic_name not in CELL_MAGICS:
            raise RemoteMagicError(unsupported_magic_message(magic_name, cell=True))
        if magic_name in ("bash", "sh"):
            return self._script(magic_name, cell)
        if magic_name == "time":
            return self._time(cell)
        return self._timeit(cell, setup=line)

    def _script(self, shell: str, body: str) -> None:
        sys.stdout.flush()
        process = subprocess.Popen([shell], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert process.stdin is not None and process.stdout is not None  # both are pipes
        try:
            process.stdin.write(body.encode())
            process.stdin.close()
            for raw in iter(process.stdout.readline, b""):
                sys.stdout.write(raw.decode(errors="replace"))
            process.wait()
        finally:
            _stop(process)

    def _time(self, source: str):
        """`%time`: run the statement or expression, print CPU and wall time, return its value."""
        try:
            code, is_expression = compile(source, "<timed>", "eval"), True
        except SyntaxError:
            code, is_expression = compile(source, "<timed>", "exec"), False
        start, wall_start = os.times(), time.perf_counter()
        value = eval(code, self.user_ns) if is_expression else exec(code, self.user_ns)
        end, wall_s = os.times(), time.perf_counter() - wall_start
        user_s, system_s = end.user - start.user, end.system - start.system
        print(
            f"CPU times: user {_format_time(user_s)}, sys: {_format_time(system_s)}, "
            f"total: {_format_time(user_s + system_s)}\nWall time: {_format_time(wall_s)}"
        )
        return value

    def _timeit(self, statement: str, setup: str = "pass", repeat: int = 7) -> None:
        """`%timeit STATEMENT` (no options): the mean and spread of the fastest loop count ≥ 0.2 s."""
        if statement.lstrip().startswith("-") or setup.lstrip().startswith("-"):
            raise RemoteMagicError("%timeit options are not supported in a %%remote cell; write %timeit STATEMENT")
        timer = timeit.Timer(statement, setup or "pass", globals=self.user_ns)
        number, _ = timer.autorange()
        per_loop = [total / number for total in timer.repeat(repeat=repeat, number=number)]
        mean = sum(per_loop) / len(per_loop)
        spread = math.sqrt(sum((value - mean) ** 2 for value in per_loop) / len(per_loop))
        print(
            f"{_format_time(mean)} ± {_format_time(spread)} per loop "
            f"(mean ± std. dev. of {repeat} runs, {number:,} loops each)"
        )


def _dollar(token: str, names: dict) -> str:
    if token == "$":
        return "$"
    if token.startswith("{"):
        try:
            return str(eval(token[1:-1], {}, names))
        except Exception:
            return "$" + token
    return str(names[token]) if token in names else "$" + token


def _stop(process: subprocess.Popen) -> None:
    # A cancelled cell (TaskCancelledError) or a failed read must not leave the command running.
    if process.poll() is None:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def _format_time(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if seconds >= scale or unit == "ns":
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds:.3g} s"


def cell_builtins(namespace: dict) -> dict:
    """The builtins a remote cell runs with: Python's, plus `get_ipython` and `display`."""
    import builtins

    shell = RemoteShell(namespace)
    return {**vars(builtins), "get_ipython": lambda: shell, "display": cell_display.display}
