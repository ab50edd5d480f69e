"""The `%%remote`, `%remote`, `%remote_reset` and `%shoal` magics.

Owns the kernel side of remote cells: capturing the names a cell reads from the user namespace,
submitting the cell (as a task or to a namespace actor), waiting for it, and writing its results
back. Options are parsed in `magic_options`, IPython syntax translated in `cell_syntax`; the
remote side is in `remote_cell`; nothing here uses `shoal._core`.

    %%remote cell ─▶ (IPython syntax ─▶ Python) ─▶ analyze_cell ─▶ capture values/refs
                                                        ─▶ run_cell.remote / actor.run.remote
    display_data (live, via output_routing, in a kernel)  ◀───────────────────────┤
    user_ns ◀── push CellResult.values, show CellResult.displays ◀── shoal.get ◀──┘
    --async: the value's ref is bound to `_remote`; the cell's status line (async_status) says
    running / done / failed, and the watcher pushes the names when the task ends.
"""

from __future__ import annotations

import ast
import functools
import sys
from typing import TYPE_CHECKING, Any

import shoal
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from shoal import exceptions
from shoal.util import output, state

from . import cell_analysis, cell_syntax, output_routing, remote_cell, status_view, wait_display
from .async_cells import AsyncCellWatcher
from .async_status import AsyncCellStatus
from .magic_options import init_parser, remote_parser, task_options, tasks_parser

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .output_routing import KernelOutputRouter

__all__ = ["ShoalMagics"]

# Every task row the cluster keeps (its history is bounded): `%shoal tasks` sorts and cuts them.
_ALL_ROWS = 1 << 30


@magics_class
class ShoalMagics(Magics):
    """shoal's magics; one instance per shell, registered by `%load_ext shoal`."""

    shell: InteractiveShell  # Magics allows None; this one is always made with its shell

    def __init__(self, shell) -> None:
        super().__init__(shell)
        self._remote_parser = remote_parser()
        self._init_parser = init_parser()
        self._tasks_parser = tasks_parser()
        self._watcher = AsyncCellWatcher()
        # Status lines of async cells still running, so they can say when they are given up.
        self._async_statuses: set[AsyncCellStatus] = set()
        self._actors: dict[str, Any] = {}  # name -> namespace actor handle
        self._cell_count = 0
        # The kernel's output router, set by `load_ipython_extension` inside an ipykernel.
        self.router: KernelOutputRouter | None = None
        self._cluster_was_shut_down = False  # the next %%remote then says it starts a new one
        output.add_shutdown_listener(self._on_shutdown)
        output.add_wait_listener(self._on_wait)
        shell.events.register("pre_run_cell", self._before_cell)

    def _before_cell(self, *args) -> None:
        # Names of async cells that have finished are in place before the next cell runs.
        self._watcher.deliver_ready()

    def close(self) -> None:
        """Stop the async watcher and drop namespace actor handles; idempotent."""
        try:
            self.shell.events.unregister("pre_run_cell", self._before_cell)
        except ValueError:
            pass
        output.remove_shutdown_listener(self._on_shutdown)
        output.remove_wait_listener(self._on_wait)
        self._stop_watching("the shoal extension was unloaded")
        self._actors.clear()

    def _on_shutdown(self) -> None:
        self._cluster_was_shut_down = True

    def _on_wait(self, info):
        # The watcher of now: `%shoal shutdown` starts a new one.
        return self._watcher.on_wait(info)

    def _stop_watching(self, reason: str) -> None:
        self._watcher.close()
        statuses, self._async_statuses = self._async_statuses, set()
        for status in statuses:
            status.abandoned(reason)

    # ------------------------------------------------------------------ %%remote and %remote

    @line_cell_magic
    def remote(self, line: str, cell: str | None = None):
        """Run a cell (`%%remote [options]`) or an expression (`%remote EXPR`) on the cluster.

        The cell runs as one task on a worker (or in `--actor NAME`'s namespace). Its output
        appears in the cell as it runs: printed text, and rich output from `display(obj)`
        (HTML, a DataFrame's table, ...), `plt.show()` or figures the cell leaves open (PNG,
        as the inline backend shows them). Without a Jupyter kernel (a terminal), rich output
        is shown when the cell ends.

        IPython syntax in the cell runs on the worker: `!cmd` runs a shell command there (its
        output streams into the cell, `_exit_code` is set), `x = !cmd` and `%sx cmd` give the
        output's lines (an SList), `$name` / `{expr}` expand from the cell's variables.
        Magics that run remotely: `%time`, `%timeit STATEMENT` (no options), `%system`,
        `%sx`, `%matplotlib` (ignored: figures are always PNG), and `%%time`, `%%timeit`,
        `%%bash`, `%%sh` as the first line of the body. Any other magic is a UsageError
        naming it, before anything is sent.

        The cell's task is named after the cell (`cell [7]`, unless `--name`), and an error in it
        shows the cell's own frames under `Cell In[7]`. With `--async` the cell returns at once:
        the ref of its value is bound to `_remote` (`--out-ref`), so `shoal.get(_remote)` gives
        the value; in a kernel the cell shows a status line (running, done in N s, or failed
        with the error) and its names are written back when it finishes.

        Args:
            line: The options (cell magic) or the expression (line magic).
            cell: The cell's source; None for the line magic.

        Returns:
            The value of the cell's last expression (shown, and stored in `Out`), or None.

        Raises:
            UsageError: Bad options, a cell that is not valid Python, or a magic that cannot
                run on a worker.
            GetTimeoutError: `--timeout` passed before the cell finished.
        """
        if cell is None:
            return self._remote_expression(line)
        args = self._remote_parser.parse_argstring(line)
        options = task_options(args)
        source, original = cell_syntax.translate(self.shell, cell)
        names = cell_analysis.analyze_cell(source)
        reads, assigns = names.reads, names.assigns
        if original is not None:
            magic_reads, magic_assigns = cell_syntax.magic_names(ast.parse(source))
            reads = tuple(
                dict.fromkeys(name for name in (*reads, *magic_reads) if name not in cell_syntax.WORKER_BUILTINS)
            )
            assigns = tuple(dict.fromkeys((*assigns, *magic_assigns)))
        if args.no_capture:
            capture = ()
        elif args.capture is not None:
            capture = args.capture
        else:
            capture = reads
        out_names = () if args.no_push else (args.out if args.out is not None else assigns)
        number = self._cell_number()
        value_ref, result_ref = self._submit(
            source,
            capture,
            out_names,
            options,
            args.actor,
            number,
            explicit=args.capture is not None,
            original=original,
        )
        if args.run_async:
            self.shell.user_ns[args.out_ref] = value_ref
            status = self._async_status(args.out_ref)
            on_ready = functools.partial(self._push_async, number=number, out_ref=args.out_ref, status=status)
            self._watcher.watch(result_ref, on_ready)
            return None
        value, result = self._wait([value_ref, result_ref], args.timeout, number)
        return self._finish(value, result)

    def _remote_expression(self, line: str):
        source = line.strip()
        if not source:
            raise UsageError("%remote: give an expression, such as `%remote sum(data)`")
        try:
            reads = cell_analysis.expression_reads(source)
        except SyntaxError as error:
            raise UsageError(f"%remote: not a single expression: {error}") from None
        number = self._cell_number()
        refs = self._submit(source, reads, (), {}, None, number, explicit=False)
        value, result = self._wait(list(refs), None, number)
        _show_displays(result.displays)
        return value

    def _cell_number(self) -> int:
        """The `[N]` of the notebook cell running this magic, as IPython names the cell's frames
        (`Cell In[N]`): the outermost frame compiled from a cell. A magic called from code
        outside any cell (`run_cell_magic` in a script) counts its own."""
        numbers = getattr(getattr(self.shell, "compile", None), "_filename_map", None) or {}
        number = None
        frame = sys._getframe(1)
        while frame is not None:
            number = numbers.get(frame.f_code.co_filename, number)
            frame = frame.f_back
        if number is not None:
            return number
        self._cell_count += 1
        return getattr(self.shell, "execution_count", None) or self._cell_count

    def _capture(self, names: tuple[str, ...], explicit: bool) -> tuple[dict, dict]:
        """Split the captured names' values into plain values and ObjectRefs."""
        user_ns = self.shell.user_ns
        hidden = self.shell.user_ns_hidden
        values, refs = {}, {}
        missing = [name for name in names if name not in user_ns]
        if explicit and missing:
            raise UsageError(f"%%remote --capture: not defined in the notebook: {', '.join(missing)}")
        for name in names:
            # Names IPython put there itself (In, Out, get_ipython, ...) stay home unless asked for.
            if name not in user_ns or (not explicit and name in hidden):
                continue
            value = user_ns[name]
            if isinstance(value, shoal.ObjectRef):
                refs[name] = value
            else:
                values[name] = value
        return values, refs

    def _submit(
        self,
        source: str,
        capture,
        out_names,
        options: dict,
        actor: str | None,
        number: int,
        explicit: bool,
        original: str | None = None,
    ):
        """Send the cell; returns the refs of its value and of its `CellResult`."""
        self._ensure_cluster()
        values, refs = self._capture(tuple(capture), explicit)
        request = remote_cell.CellRequest(
            source=source,
            filename=f"<remote-cell-{number}>",
            values=values,
            ref_names=tuple(refs),
            out_names=tuple(out_names),
            # Live only where something routes the marked records into the cell (a kernel's router).
            live_display=self.router is not None and output.delivers_logs(),
            original_source=original,
        )
        # The task is named after its cell, as `%shoal tasks` and the output prefixes show it.
        options = {"name": f"cell [{number}]", **options}
        try:
            if actor is None:
                return remote_cell.run_cell.options(**options).remote(request, *refs.values())
            handle = self._namespace_actor(actor, options)
            return handle.run.options(name=options["name"]).remote(request, *refs.values())
        except Exception as error:
            unpicklable = {name: remote_cell.unpicklable_reason(value) for name, value in values.items()}
            unpicklable = {name: reason for name, reason in unpicklable.items() if reason and reason != "a module"}
            if unpicklable:
                name, reason = next(iter(unpicklable.items()))
                raise UsageError(
                    f"%%remote: cannot send {name!r} to the cluster: {reason}; "
                    "choose the names to send with --capture a,b"
                ) from error
            raise

    def _namespace_actor(self, name: str, options: dict):
        handle = self._actors.get(name)
        if handle is None:
            if "max_retries" in options:
                raise UsageError("%%remote: --retries does not apply to --actor cells")
            actor_options = {k: v for k, v in options.items() if k in ("num_cpus", "num_gpus", "memory", "resources")}
            actor_options.setdefault("num_cpus", 0)
            handle = remote_cell.CellNamespace.options(
                name=remote_cell.actor_name(name), get_if_exists=True, **actor_options
            ).remote()
            self._actors[name] = handle
        return handle

    def _wait(self, refs: list, timeout_s: float | None, number: int) -> tuple[object, remote_cell.CellResult]:
        try:
            # In a kernel, a cell that runs past a moment shows its elapsed time (wait_display).
            with wait_display.labelled("%%remote"):
                value, result = shoal.get(refs, timeout=timeout_s)
                return value, result
        except exceptions.RayTaskError as error:
            _name_cell(error, number)
            raise
        except (exceptions.GetTimeoutError, KeyboardInterrupt):
            # The cell is abandoned: it must not keep running (and holding resources) unseen.
            try:
                shoal.cancel(refs[0])
            except Exception:  # cancelling is best effort; the timeout is what to report
                pass
            raise

    def _push(self, result: remote_cell.CellResult) -> None:
        self.shell.user_ns.update(result.values)
        skipped = _reported_skips(result)
        if skipped:
            details = "; ".join(f"{name}: {reason}" for name, reason in skipped.items())
            print(f"%%remote: not written back: {details}", file=sys.stderr)

    def _finish(self, value, result: remote_cell.CellResult):
        _show_displays(result.displays)
        self._push(result)
        return value if result.has_value else None

    def _async_status(self, out_ref: str) -> AsyncCellStatus | None:
        """The async cell's own status line, in a kernel (elsewhere there is no cell to put it in)."""
        kernel = output_routing.kernel_of(self.shell)
        if kernel is None:
            return None
        status = AsyncCellStatus(kernel, out_ref)
        self._async_statuses.add(status)
        return status

    def _push_async(self, ref, number: int, out_ref: str, status: AsyncCellStatus | None) -> None:
        self._async_statuses.discard(status)
        try:
            result = shoal.get(ref)
        except Exception as error:  # raised in full when the user reads the ref
            if isinstance(error, exceptions.RayTaskError):
                _name_cell(error, number)
            if status is not None:
                status.failed(error)
            else:
                print(
                    f"%%remote --async: the cell failed with {type(error).__name__}; shoal.get({out_ref}) shows why",
                    file=sys.stderr,
                )
            return
        if status is None:
            _show_displays(result.displays)
            self._push(result)
            return
        status.show_displays(result.displays)
        self.shell.user_ns.update(result.values)
        status.done(list(result.values), _reported_skips(result))

    @line_magic
    def remote_reset(self, line: str) -> None:
        """`%remote_reset NAME`: clear the namespace of the `--actor NAME` cells.

        Raises:
            UsageError: No name, or no such namespace actor.
        """
        name = line.strip()
        if not name:
            raise UsageError("%remote_reset: give the --actor name to clear")
        handle = self._actors.get(name)
        if handle is None:
            if not shoal.is_initialized():
                raise UsageError(f"%remote_reset: no actor namespace {name!r} (no cluster is running)")
            try:
                handle = shoal.get_actor(remote_cell.actor_name(name))
            except ValueError:
                raise UsageError(f"%remote_reset: no actor namespace {name!r}") from None
        cleared = shoal.get(handle.reset.options(name=f"%remote_reset {name}").remote())
        print(f"cleared {cleared} names in actor namespace {name!r}")

    # ------------------------------------------------------------------------------- %shoal

    @line_magic
    def shoal(self, line: str):
        """`%shoal init|status|shutdown|tasks|actors`: manage and inspect the cluster.

        `%shoal tasks [--state STATE] [--name TEXT] [--limit N]` lists the most recent tasks
        first (20 unless `--limit`), optionally only those in one state (`RUNNING`, `FINISHED`,
        `FAILED`, `pending`, ...) or whose name contains TEXT. A `%%remote` cell's task is named
        after its cell, such as `cell [7]`.

        Returns:
            `init`: the RayContext; `status`: a ClusterStatus; `tasks`/`actors`: a StateTable.

        Raises:
            UsageError: An unknown subcommand or bad options.
        """
        command, _, rest = line.strip().partition(" ")
        if command == "init":
            args = self._init_parser.parse_argstring(rest)
            return shoal.init(num_cpus=args.num_cpus, num_gpus=args.num_gpus, address=args.address)
        if command == "tasks":
            return self._tasks(rest)
        if rest.strip():
            raise UsageError(f"%shoal {command}: takes no options, got {rest.strip()!r}")
        if command == "status":
            if not shoal.is_initialized():
                return status_view.ClusterStatus({}, {}, {}, connected=False)
            if getattr(self.shell, "kernel", None) is not None:
                # In a Jupyter kernel: the live cluster widget (it keeps a static summary).
                from shoal.widgets import ClusterView

                return ClusterView()
            return status_view.ClusterStatus.from_state(
                shoal.cluster_resources(), shoal.available_resources(), state.summarize_tasks()
            )
        if command == "shutdown":
            self._stop_watching("the cluster was shut down")
            self._actors.clear()
            self._watcher = AsyncCellWatcher()
            shoal.shutdown()
            return None
        if command == "actors":
            self._require_cluster("actors")
            return status_view.StateTable("actors", status_view.ACTOR_COLUMNS, tuple(state.list_actors()))
        raise UsageError(
            f"%shoal: unknown command {command!r}; use init, status, shutdown, tasks or actors"
            if command
            else "%shoal: give a command: init, status, shutdown, tasks or actors"
        )

    def _tasks(self, options: str) -> status_view.StateTable:
        args = self._tasks_parser.parse_argstring(options)
        if args.limit < 1:
            raise UsageError(f"%shoal tasks: --limit must be at least 1, got {args.limit}")
        try:
            if args.state is not None:
                status_view.task_states(args.state)  # a bad state is named before the cluster is asked
        except ValueError as error:
            raise UsageError(f"%shoal tasks: {error}") from None
        self._require_cluster("tasks")
        matching = status_view.recent_tasks(state.list_tasks(limit=_ALL_ROWS), state=args.state, name=args.name)
        rows = tuple(matching[: args.limit])
        return status_view.StateTable("tasks", status_view.TASK_COLUMNS, rows, total=len(matching))

    @staticmethod
    def _require_cluster(command: str) -> None:
        if not shoal.is_initialized():
            raise UsageError(f"%shoal {command}: no cluster is running; start one with %shoal init")

    def _ensure_cluster(self) -> None:
        if not shoal.is_initialized():
            if self._cluster_was_shut_down:
                print("shoal: the cluster was shut down; starting a new one", flush=True)
            shoal.init()
            self._cluster_was_shut_down = False


def _name_cell(error, number: int) -> None:
    """Head a `%%remote` cell's error with its cell rather than the task's function."""
    error.proctitle = f"Cell In[{number}] on the cluster"


def _reported_skips(result: remote_cell.CellResult) -> dict[str, str]:
    """Names not written back that are worth a word (modules never are)."""
    return {name: reason for name, reason in result.skipped.items() if reason != "a module"}


def _show_displays(messages: list) -> None:
    """Show the rich output a remote cell returned (when it was not sent live) in this cell."""
    if not messages:
        return
    from IPython.display import clear_output, publish_display_data

    for message in messages:
        if "clear" in message:
            clear_output(wait=bool(message["clear"]))
            continue
        extra = {"transient": message["transient"]} if message.get("transient") else {}
        if message.get("update"):
            extra["update"] = True
        publish_display_data(data=message.get("data") or {}, metadata=message.get("metadata") or {}, **extra)
