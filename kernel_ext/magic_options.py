"""The options of `%%remote` and `%shoal`: their parsers and the task options they ask for.

A parser's errors name the magic and raise UsageError; values are checked here, before anything
is sent. No cluster calls here.
"""

from __future__ import annotations

import argparse
import json
import shlex
from typing import Literal, overload

from IPython.core.error import UsageError
from IPython.core.magic_arguments import MagicArgumentParser

__all__ = ["DEFAULT_OUT_REF", "DEFAULT_TASK_ROWS", "init_parser", "remote_parser", "task_options", "tasks_parser"]

DEFAULT_OUT_REF = "_remote"
DEFAULT_TASK_ROWS = 20  # `%shoal tasks` shows this many of the most recent tasks


class _Parser(MagicArgumentParser):
    """A magic's option parser whose errors name the magic and raise UsageError."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog=prog)
        self.allow_abbrev = False

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")

    @overload
    def parse_argstring(self, argstring: str, *, partial: Literal[False] = False) -> argparse.Namespace: ...
    @overload
    def parse_argstring(self, argstring: str, *, partial: Literal[True]) -> tuple[argparse.Namespace, list[str]]: ...
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


def remote_parser() -> _Parser:
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


def init_parser() -> _Parser:
    parser = _Parser("%shoal init")
    parser.add_argument("--num-cpus", type=int)
    parser.add_argument("--num-gpus", type=int)
    parser.add_argument("--address")
    return parser


def tasks_parser() -> _Parser:
    parser = _Parser("%shoal tasks")
    parser.add_argument("--state", help="only tasks in this state (RUNNING, FINISHED, FAILED, pending, ...)")
    parser.add_argument("--name", help="only tasks whose name contains this text")
    parser.add_argument("--limit", type=int, default=DEFAULT_TASK_ROWS, help="show at most this many")
    return parser


def task_options(args) -> dict:
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
