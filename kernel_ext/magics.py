"""The `%%remote`, `%remote`, `%remote_reset` and `%shoal` magics.

Owns the kernel side of remote cells: option parsing, capturing the names a cell reads from the
user namespace, submitting the cell (as a task or to a namespace actor), waiting for it, and
writing its results back. The remote side is in `remote_cell`; nothing here uses `shoal._core`.

    %%remote cell ─▶ (IPython syntax ─▶ Python) ─▶ analyze_cell ─▶ capture values/refs
                                                        ─▶ run_cell.remote / actor.run.remote
    display_data (live, via output_routing, in a kernel)  ◀───────────────────────┤
    user_ns ◀── push CellResult.values, show CellResult.displays ◀── shoal.get ◀──┘
"""

from __future__ import annotations

import ast
import functools
import json
import re
import shlex
import sys

import shoal
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import MagicArgumentParser
from shoal import exceptions
from shoal.util import output, state

from . import cell_analysis, remote_cell, remote_shell, status_view, wait_display
from .async_cells import AsyncCellWatcher

__all__ = ["ShoalMagics"]

DEFAULT_OUT_REF = "_remote"
# Names the worker provides itself in a remote cell; never captured from the notebook.
_WORKER_BUILTINS = ("get_ipython",)
_SHELL_FIELD = re.compile(r"\$\{([^{}]*)\}|\{([^{}]*)\}|\$([A-Za-z_]\w*)")


class _Parser(MagicArgumentParser):
    """A magic's option parser whose errors name the magic and raise UsageError."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog=prog)
        self.allow_abbrev = False

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")

    def parse_argstring(self, argstring: str, *, partial: bool = False):
        """Parse with shell quoting, so `--resources '{"a": 1}'` arrives without its quotes."""
        try:
            argv = shlex.split(argstring)
        except ValueError as error:
            raise UsageError(f"{self.prog}: {error}") from None
        return self.parse_known_args(argv) if partial else self.parse_args(argv)


def _names(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [name for name in names if not name.isidentifier()]
    if bad:
        raise UsageError(f"not a variable name: {', '.join(map(repr, bad))}")
    return names


def _remote_parser() -> _Parser:
    parser = _Parser("%%remote")
    parser.add_argument("--num-cpus", type=float)
    parser.add_argument("--num-gpus", type=float)
    parser.add_argument("--memory", type=float, help="bytes of memory to reserve")
    parser.add_argument("--resources", help="custom resources as a JSON object")
    parser.add_argument("--retries", type=int, help="max_retries of the task")
    parser.add_argument("--timeout", type=float, help="seconds to wait before GetTimeoutError")
    parser.add_argument("--name", help="the task's name in the state API")
    capture = parser.add_mutually_exclusive_group()
    capture.add_argument("--capture", type=_names, help="names to capture, comma separated")
    capture.add_argument("--no-capture", action="store_true")
    push = parser.add_mutually_exclusive_group()
    push.add_argument("--out", type=_names, help="names to write back, comma separated")
    push.add_argument("--no-push", action="store_true")
    parser.add_argument("--async", dest="run_async", action="store_true")
    parser.add_argument("--out-ref", default=DEFAULT_OUT_REF)
    parser.add_argument("--actor", help="run in this named actor's persistent namespace")
    return parser


def _init_parser() -> _Parser:
    parser = _Parser("%shoal init")
    parser.add_argument("--num-cpus", type=int)
    parser.add_argument("--num-gpus", type=int)
    parser.add_argument("--address")
    return parser


def _task_options(args) -> dict:
    """The task options the parsed `%%remote` options ask for (only those given)."""
    options = {}
    for name in ("num_cpus", "num_gpus", "memory"):
        value = getattr(args, name)
        if value is not None:
            if value < 0:
                raise UsageError(f"%%remote: --{name.replace('_', '-')} must be >= 0, got {value:g}")
            options[name] = int(value) if float(value).is_integer() else value
    if args.resources is not None:
        try:
            resources = json.loads(args.resources)
        except json.JSONDecodeError as error:
            raise UsageError(f"%%remote: --resources must be a JSON object: {error}") from None
        if not isinstance(resources, dict) or not all(isinstance(v, (int, float)) for v in resources.values()):
            raise UsageError("%%remote: --resources must be a JSON object of numbers, such as '{\"tpu\": 1}'")
        options["resources"] = resources
    if args.retries is not None:
        if args.retries < -1:
            raise UsageError(f"%%remote: --retries must be >= -1, got {args.retries}")
        options["max_retries"] = args.retries
    if args.name is not None:
        options["name"] = args.name
    if args.timeout is not None and args.timeout < 0:
        raise UsageError(f"%%remote: --timeout must be >= 0, got {args.timeout:g}")
    if not args.out_ref.isidentifier():
        raise UsageError(f"%%remote: --out-ref must be a variable name, got {args.out_ref!r}")
    return options


@magics_class
class ShoalMagics(Magics):
    """shoal's magics; one instance per shell, registered by `%load_ext shoal`."""

    def __init__(self, shell) -> None:
        super().__init__(shell)
        self._remote_parser = _remote_parser()
        self._init_parser = _init_parser()
        self._watcher = AsyncCellWatcher()
        self._actors: dict[str, object] = {}
        self._cell_count = 0
        # The kernel's output router, set by `load_ipython_extension` inside an ipykernel.
        self.router = None
        self._cluster_was_shut_down = False  # the next %%remote then says it starts a new one
        output.add_shutdown_listener(self._on_shutdown)
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
        self._watcher.close()
        self._actors.clear()

    def _on_shutdown(self) -> None:
        self._cluster_was_shut_down = True

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
        options = _task_options(args)
        source, original = _translate(self.shell, cell)
        names = cell_analysis.analyze_cell(source)
        reads, assigns = names.reads, names.assigns
        if original is not None:
            magic_reads, magic_assigns = _magic_names(ast.parse(source))
            reads = tuple(dict.fromkeys(name for name in (*reads, *magic_reads) if name not in _WORKER_BUILTINS))
            assigns = tuple(dict.fromkeys((*assigns, *magic_assigns)))
        if args.no_capture:
            capture = ()
        elif args.capture is not None:
            capture = args.capture
        else:
            capture = reads
        out_names = () if args.no_push else (args.out if args.out is not None else assigns)
        ref = self._submit(
            source, capture, out_names, options, args.actor, explicit=args.capture is not None, original=original
        )
        if args.run_async:
            self.shell.user_ns[args.out_ref] = ref
            self._watcher.watch(ref, functools.partial(self._push_async, out_ref=args.out_ref))
            return None
        result = self._wait(ref, args.timeout)
        return self._finish(result)

    def _remote_expression(self, line: str):
        source = line.strip()
        if not source:
            raise UsageError("%remote: give an expression, such as `%remote sum(data)`")
        try:
            reads = cell_analysis.expression_reads(source)
        except SyntaxError as error:
            raise UsageError(f"%remote: not a single expression: {error}") from None
        result = self._wait(self._submit(source, reads, (), {}, None, explicit=False), None)
        _show_displays(result.displays)
        return result.value

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
        explicit: bool,
        original: str | None = None,
    ):
        self._ensure_cluster()
        values, refs = self._capture(tuple(capture), explicit)
        self._cell_count += 1
        count = getattr(self.shell, "execution_count", None) or self._cell_count
        request = remote_cell.CellRequest(
            source=source,
            filename=f"<remote-cell-{count}>",
            values=values,
            ref_names=tuple(refs),
            out_names=tuple(out_names),
            # Live only where something routes the marked records into the cell (a kernel's router).
            live_display=self.router is not None and output.delivers_logs(),
            original_source=original,
        )
        try:
            if actor is None:
                return remote_cell.run_cell.options(**options).remote(request, *refs.values())
            handle = self._namespace_actor(actor, options)
            method = handle.run.options(name=options["name"]) if "name" in options else handle.run
            return method.remote(request, *refs.values())
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

    def _wait(self, ref, timeout_s: float | None) -> remote_cell.CellResult:
        try:
            # In a kernel, a cell that runs past a moment shows its elapsed time (wait_display).
            with wait_display.labelled("%%remote"):
                return shoal.get(ref, timeout=timeout_s)
        except (exceptions.GetTimeoutError, KeyboardInterrupt):
            # The cell is abandoned: it must not keep running (and holding resources) unseen.
            try:
                shoal.cancel(ref)
            except Exception:  # cancelling is best effort; the timeout is what to report
                pass
            raise

    def _push(self, result: remote_cell.CellResult) -> None:
        self.shell.user_ns.update(result.values)
        skipped = {name: reason for name, reason in result.skipped.items() if reason != "a module"}
        if skipped:
            details = "; ".join(f"{name}: {reason}" for name, reason in skipped.items())
            print(f"%%remote: not written back: {details}", file=sys.stderr)

    def _finish(self, result: remote_cell.CellResult):
        _show_displays(result.displays)
        self._push(result)
        return result.value if result.has_value else None

    def _push_async(self, ref, out_ref: str) -> None:
        try:
            result = shoal.get(ref)
        except Exception as error:  # raised in full when the user reads the ref
            print(
                f"%%remote --async: the cell failed with {type(error).__name__}; shoal.get({out_ref}) shows why",
                file=sys.stderr,
            )
            return
        _show_displays(result.displays)
        self._push(result)

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
        cleared = shoal.get(handle.reset.remote())
        print(f"cleared {cleared} names in actor namespace {name!r}")

    # ------------------------------------------------------------------------------- %shoal

    @line_magic
    def shoal(self, line: str):
        """`%shoal init|status|shutdown|tasks|actors`: manage and inspect the cluster.

        Returns:
            `init`: the RayContext; `status`: a ClusterStatus; `tasks`/`actors`: a StateTable.

        Raises:
            UsageError: An unknown subcommand or bad options.
        """
        command, _, rest = line.strip().partition(" ")
        if command == "init":
            args = self._init_parser.parse_argstring(rest)
            return shoal.init(num_cpus=args.num_cpus, num_gpus=args.num_gpus, address=args.address)
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
            self._watcher.close()
            self._actors.clear()
            self._watcher = AsyncCellWatcher()
            shoal.shutdown()
            return None
        if command == "tasks":
            self._require_cluster("tasks")
            return status_view.StateTable("tasks", status_view.TASK_COLUMNS, tuple(state.list_tasks()))
        if command == "actors":
            self._require_cluster("actors")
            return status_view.StateTable("actors", status_view.ACTOR_COLUMNS, tuple(state.list_actors()))
        raise UsageError(
            f"%shoal: unknown command {command!r}; use init, status, shutdown, tasks or actors"
            if command
            else "%shoal: give a command: init, status, shutdown, tasks or actors"
        )

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


# ------------------------------------------------------------------ IPython syntax in a cell


def _translate(shell, cell: str) -> tuple[str, str | None]:
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


def _magic_names(tree: ast.Module) -> tuple[list[str], list[str]]:
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
