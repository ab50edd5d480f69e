"""Hooks for front ends (the Jupyter layer) on the driver: where worker output goes, and
which tasks the current code submits.

Both hooks run on hot paths: a submit listener sees every task id the driver submits (keep
it to an append), and the log handler runs on the client's I/O thread (hand the records to
your own queue or send them; do not block).
"""

from __future__ import annotations

from typing import Callable

from .. import api

_submit_listeners: list = []


def set_log_handler(handler: Callable[[list], None] | None) -> None:
    """Route worker output: `handler(records)` gets dicts with task_id (hex), task_name, pid,
    stream ("stdout"/"stderr") and text, instead of the driver printing them. None restores
    printing."""
    api._log_handler_override = handler
    session = api._session
    if session is not None:
        session.log_handler = _adapt(handler) if handler is not None else None


def _adapt(handler: Callable[[list], None]) -> Callable[[list], None]:
    def deliver(records: list) -> None:
        handler(
            [
                {
                    "task_id": record.task_id.hex() if record.task_id else None,
                    "task_name": record.task_name,
                    "pid": record.pid,
                    "stream": record.stream,
                    "text": record.text,
                }
                for record in records
            ]
        )

    return deliver


def add_submit_listener(listener: Callable[[str], None]) -> None:
    """Call `listener(task_id_hex)` in the submitting thread for every task and actor call."""
    if listener not in _submit_listeners:
        _submit_listeners.append(listener)


def remove_submit_listener(listener: Callable[[str], None]) -> None:
    try:
        _submit_listeners.remove(listener)
    except ValueError:
        pass


__all__ = ["add_submit_listener", "remove_submit_listener", "set_log_handler"]
