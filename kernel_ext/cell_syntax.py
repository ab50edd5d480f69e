"""IPython syntax in a `%%remote` cell: the Python the worker runs, and what its magics read.

The kernel's input transformers turn `!cmd`, `x = !cmd`, `%magic` and `%%magic` into
`get_ipython()` calls, which the worker's `remote_shell.RemoteShell` serves; this module checks
every magic is one that runs there and finds the names hidden in their text (`$name`, `{expr}`,
a `%time` statement), which `cell_analysis` cannot see. Runs in the kernel; no cluster calls.
"""

from __future__ import annotations

import ast
import re

from IPython.core.error import UsageError

from . import cell_analysis, remote_shell

__all__ = ["WORKER_BUILTINS", "magic_names", "translate"]

# Names the worker provides itself in a remote cell; never captured from the notebook.
WORKER_BUILTINS = ("get_ipython",)
_SHELL_FIELD = re.compile(r"\$\{([^{}]*)\}|\{([^{}]*)\}|\$([A-Za-z_]\w*)")


def translate(shell, cell: str) -> tuple[str, str | None]:
    """The cell as Python, and the cell as typed when that differs.

    A cell that parses is sent as it is; one that does not (`!cmd`, `x = !cmd`, `%magic`,
    `%%magic`) is translated by the shell's input transformers into `get_ipython()` calls,
    which the worker's `remote_shell.RemoteShell` serves.

    Raises:
        UsageError: The cell is not valid Python, translated or not.
    """
    try:
        ast.parse(cell)
        return cell, None
    except SyntaxError as error:
        first_error = error
    translated = shell.transform_cell(cell)
    try:
        ast.parse(translated)
    except SyntaxError:
        raise UsageError(f"%%remote: the cell is not valid Python: {first_error}") from None
    return translated, cell


def magic_names(tree: ast.Module) -> tuple[list[str], list[str]]:
    """Check a translated cell's magics run remotely; the names their text reads and binds.

    `$name` and `{expr}` in a shell command read names, and so does the statement of
    `%time`/`%timeit` (a `%time` assignment binds its target): these are in strings, so
    `analyze_cell` does not see them.

    Raises:
        UsageError: A magic that cannot run on a worker (named, with the ones that can).
    """
    reads: list[str] = []
    assigns: list[str] = []
    for node in ast.walk(tree):
        method = _shell_method(node)
        if method is None:
            continue
        assert isinstance(node, ast.Call)  # what _shell_method matches
        texts = [arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else "" for arg in node.args]
        if method in ("system", "getoutput") and texts:
            reads += _command_reads(texts[0])
        elif method in ("run_line_magic", "run_cell_magic") and len(texts) >= 2:
            cell_magic = method == "run_cell_magic"
            name = texts[0]
            if name not in (remote_shell.CELL_MAGICS if cell_magic else remote_shell.LINE_MAGICS):
                raise UsageError(remote_shell.unsupported_magic_message(name, cell=cell_magic))
            if name in ("system", "sx"):
                reads += _command_reads(texts[1])
            elif name in ("time", "timeit"):
                for code in texts[1:]:
                    try:
                        names = cell_analysis.analyze_cell(code)
                    except SyntaxError:
                        continue  # the worker reports it, with the magic's line
                    reads += names.reads
                    assigns += names.assigns if name == "time" else ()
    return reads, assigns


def _shell_method(node: ast.AST) -> str | None:
    """`method` for a `get_ipython().method(...)` call node, else None."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
        return None
    target = node.func.value
    if isinstance(target, ast.Call) and isinstance(target.func, ast.Name) and target.func.id == "get_ipython":
        return node.func.attr
    return None


def _command_reads(command: str) -> list[str]:
    reads: list[str] = []
    for match in _SHELL_FIELD.finditer(command):
        expression = next(group for group in match.groups() if group is not None)
        try:
            reads += cell_analysis.expression_reads(expression)
        except SyntaxError:
            continue  # not an expansion IPython would make either; the text runs as written
    return reads
