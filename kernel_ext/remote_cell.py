"""Running a notebook cell on the cluster: the remote function and the actor namespace.

The driver ships the cell's source and the values it captured; the worker compiles the cell
under its own name (`<remote-cell-N>`, registered with `linecache`, so tracebacks point at the
cell's lines and show them), executes it in a namespace, and returns a `CellResult`: the
values of the names to push back and the value of a trailing expression. While it runs,
`display()`, `plt.show()` and `get_ipython()` (for `!cmd` and the few magics that run remotely)
are the worker's own (`cell_display`, `remote_shell`).

    driver (magics)                       worker / actor
    source, captured values, refs  ──▶    execute_cell(namespace, ...)
                                   ◀──    display messages (live, as marked stdout records)
                                   ◀──    return 1: the cell's value; return 2: CellResult(values, skipped, displays)

A failing cell's traceback starts at the cell's own frame: the frames of this module (and the
runtime's, which `RayTaskError` leaves out) are not the user's code.

No IPython here: this module is imported on workers. Uses the public API only.
"""

from __future__ import annotations

import ast
import builtins
import linecache
import types
from dataclasses import dataclass, field

import cloudpickle
import shoal

from . import cell_display, remote_shell
from .cell_analysis import split_last_expression

__all__ = ["CellNamespace", "CellRequest", "CellResult", "actor_name", "execute_cell", "run_cell", "unpicklable_reason"]


@dataclass(frozen=True)
class CellRequest:
    """What the worker needs to run one cell (everything but the ObjectRef values).

    Attributes:
        source: The cell's Python source.
        filename: The name its code is compiled under, such as `<remote-cell-3>`.
        values: Captured plain values by name.
        ref_names: Names of captured ObjectRefs, in the order their values follow as task args.
        out_names: Names to send back after the cell ran (those it did not bind are ignored).
        live_display: Send rich output (`display()`, figures) as it is made, on the task's
            output channel (the kernel routes it); otherwise return it in `CellResult.displays`.
        original_source: The cell as typed, when `source` is IPython's translation of it (`!cmd`,
            `%magic`); tracebacks show its lines.
    """

    source: str
    filename: str
    values: dict = field(default_factory=dict)
    ref_names: tuple[str, ...] = ()
    out_names: tuple[str, ...] = ()
    live_display: bool = False
    original_source: str | None = None


@dataclass
class CellResult:
    """What a remote cell gives back to the magics besides its value (`execute_cell` returns it
    with the value in; the remote function sends the value as its own return, which is the ref
    an `--async` cell binds, so `shoal.get(_remote)` gives the cell's value).

    Attributes:
        values: The pushed-back names and their values.
        skipped: Names not sent back, with the reason (a module, or not picklable).
        value: The value of the cell's trailing expression, or None.
        has_value: Whether the cell ended in an expression.
        displays: Display messages (see `cell_display`) not already sent live, in order.
    """

    values: dict
    skipped: dict
    value: object = None
    has_value: bool = False
    displays: list = field(default_factory=list)


def _fresh_namespace() -> dict:
    # `__main__` as the module name makes functions and classes defined in the cell pickle
    # by value, so they can be pushed back to a driver that cannot import them.
    return {"__name__": "__main__", "__builtins__": builtins}


def _register_source(filename: str, source: str) -> None:
    lines = source.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    # mtime None marks an entry linecache.checkcache must keep (there is no file to check).
    linecache.cache[filename] = (len(source), None, lines, filename)


def unpicklable_reason(value) -> str | None:
    """Why `value` cannot be sent between driver and worker, or None when it can.

    Args:
        value: Any value a cell reads or binds.

    Returns:
        `"a module"` for modules (never pushed back), a short reason when pickling fails, or
        None.
    """
    if isinstance(value, types.ModuleType):
        return "a module"
    try:
        cloudpickle.dumps(value)
    except Exception as error:  # any failure means the value cannot travel back
        return f"not picklable ({type(error).__name__}: {error})"
    return None


def execute_cell(namespace: dict, request: CellRequest, ref_values: tuple) -> CellResult:
    """Execute a cell in `namespace` and collect what goes back to the notebook.

    Args:
        namespace: Globals the cell runs in (a fresh dict, or an actor's persistent one).
        request: The cell and its captured values.
        ref_values: The values of `request.ref_names`, resolved by the runtime.

    Returns:
        The values of `request.out_names` the cell bound (modules and unpicklable values
        left out and listed in `skipped`) and the value of a trailing expression.

    Raises:
        Exception: Whatever the cell raised; its traceback names `request.filename`.
    """
    namespace.update(request.values)
    namespace.update(zip(request.ref_names, ref_values))
    for name, value in request.values.items():
        # IPython's display functions captured from the notebook would print on the worker.
        replacement = cell_display.replacement_for(value)
        if replacement is not None:
            namespace[name] = replacement
    namespace["__builtins__"] = remote_shell.cell_builtins(namespace)
    shown = request.original_source
    if shown is None or len(shown.splitlines()) != len(request.source.splitlines()):
        shown = request.source
    _register_source(request.filename, shown)
    tree = ast.parse(request.source, filename=request.filename)
    body, last = split_last_expression(tree)
    result = CellResult(values={}, skipped={})
    with cell_display.DisplayCapture(request.live_display, patch_ipython="IPython" in request.source) as capture:
        exec(compile(body, request.filename, "exec"), namespace)
        if last is not None:
            result.value = eval(compile(last, request.filename, "eval"), namespace)
            result.has_value = True
            if cell_display.is_figure(result.value):
                # Shown as the PNG a notebook shows for a figure; the figure itself stays here.
                cell_display.display(result.value)
                result.value, result.has_value = None, False
    result.displays = capture.messages
    if result.has_value and unpicklable_reason(result.value) is not None:
        result.value = _Unpicklable(repr(result.value))
    for name in request.out_names:
        if name not in namespace:
            continue
        value = namespace[name]
        reason = unpicklable_reason(value)
        if reason is None:
            result.values[name] = value
        else:
            result.skipped[name] = reason
    return result


class _Unpicklable:
    """Stands in for a last-expression value that cannot travel: shows the remote repr."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _from_cell_frame(error: BaseException, filename: str) -> None:
    """Drop the frames above the cell's own from `error`'s traceback (this module's, the runtime's)."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != filename:
        tb = tb.tb_next
    if tb is not None:  # else the cell never ran (it failed to compile): keep what there is
        error.__traceback__ = tb


def _returns(result: CellResult) -> tuple[object, CellResult]:
    """The cell's value and the rest, as the two returns of a cell's task."""
    value, result.value = result.value, None
    return value, result


def _run_cell(request: CellRequest, *ref_values) -> tuple[object, CellResult]:
    try:
        return _returns(execute_cell(_fresh_namespace(), request, ref_values))
    except BaseException as error:
        _from_cell_frame(error, request.filename)
        raise  # a bare raise keeps the trimmed traceback: this frame is not added again


run_cell = shoal.remote(num_returns=2)(_run_cell)
"""The remote function a `%%remote` cell runs as: returns (value, CellResult); its ObjectRef args
arrive as values."""


class _CellNamespaceActor:
    """A persistent namespace on one worker: cells sent to it see earlier cells' variables."""

    def __init__(self) -> None:
        self.namespace = _fresh_namespace()

    @shoal.method(num_returns=2)
    def run(self, request: CellRequest, *ref_values) -> tuple[object, CellResult]:
        try:
            return _returns(execute_cell(self.namespace, request, ref_values))
        except BaseException as error:
            _from_cell_frame(error, request.filename)
            raise

    def reset(self) -> int:
        cleared = len([name for name in self.namespace if not name.startswith("__")])
        self.namespace = _fresh_namespace()
        return cleared

    def names(self) -> list[str]:
        return sorted(name for name in self.namespace if not name.startswith("__"))


CellNamespace = shoal.remote(_CellNamespaceActor)
"""The actor class behind `%%remote --actor NAME`."""


def actor_name(name: str) -> str:
    """The registered name of the namespace actor a user calls `name`.

    Args:
        name: The name given to `--actor`.

    Returns:
        The actor's name in the cluster, prefixed so it cannot collide with the user's actors.
    """
    return f"shoal-cell:{name}"
