"""How a `TaskView` draws recent tasks: a table, and a timeline of what ran on which worker, with
a time axis, a legend by function and hover details (name, duration, worker, state).

Pure: takes task rows from `shoal.util.state.list_tasks` and `now_ms` for tasks still running.
"""

from __future__ import annotations

import html
import math

from .cluster_summary import TASK_WORDS, task_word

ROW_HEIGHT = 20
LABEL_WIDTH = 90
PLOT_WIDTH = 600
AXIS_HEIGHT = 24
TABLE_ROWS = 10  # the table lists the newest tasks; the timeline shows them all
# Functions get colours in the order they first appear (a categorical palette, colour-blind safe).
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#bab0ac")
_FAILED_STROKE = "#c62828"


def recent_tasks(rows: list[dict], limit: int) -> list[dict]:
    """The `limit` most recently started tasks, newest first (unstarted ones first of all)."""
    return sorted(rows, key=lambda row: row.get("start_time_ms") or float("inf"), reverse=True)[:limit]


def task_name(row: dict) -> str:
    return str(row.get("name") or row.get("func_or_class_name") or "?")


def duration_s(row: dict, now_ms: int) -> float | None:
    start = row.get("start_time_ms")
    if not start:
        return None
    return ((row.get("end_time_ms") or now_ms) - start) / 1000.0


def row_word(row: dict) -> str:
    return task_word(str(row.get("state", "")), row.get("error_type"))


def function_colours(rows: list[dict]) -> dict[str, str]:
    """A colour per function name, stable for a given set of names (sorted)."""
    names = sorted({task_name(row) for row in rows})
    return {name: PALETTE[index % len(PALETTE)] for index, name in enumerate(names)}


def word_counts(rows: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(TASK_WORDS, 0)
    for row in rows:
        counts[row_word(row)] += 1
    return counts


def render_table(rows: list[dict], now_ms: int, max_rows: int = TABLE_ROWS) -> str:
    """An HTML table of the newest `max_rows` rows: name, state, worker pid, duration."""
    body = []
    for row in rows[:max_rows]:
        duration = duration_s(row, now_ms)
        cells = (
            task_name(row),
            row_word(row),
            "" if row.get("worker_pid") is None else str(row["worker_pid"]),
            "" if duration is None else f"{duration:.3f} s",
        )
        body.append("<tr class='shoal-task-row'>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{name}</th>" for name in ("name", "state", "worker pid", "duration"))
    more = len(rows) - max_rows
    caption = f"<caption style='caption-side:bottom;color:#777'>and {more} more</caption>" if more > 0 else ""
    return f"<table class='shoal-tasks'>{caption}<tr>{header}</tr>{''.join(body)}</table>"


def _tick_step_ms(span_ms: float, target_ticks: int = 6) -> float:
    """A round tick spacing (1, 2 or 5 times a power of ten) giving about `target_ticks` ticks."""
    raw = max(span_ms, 1.0) / target_ticks
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * power:
            return factor * power
    return 10 * power


def _tick_label(offset_ms: float, step_ms: float) -> str:
    seconds = offset_ms / 1000.0
    decimals = 0 if step_ms >= 1000 else (1 if step_ms >= 100 else (2 if step_ms >= 10 else 3))
    return f"{seconds:.{decimals}f} s"


def _hover(row: dict, now_ms: int) -> str:
    duration = duration_s(row, now_ms) or 0.0
    worker = f"worker pid {row.get('worker_pid')}"
    if row.get("node_id"):
        worker += f" on node {str(row['node_id'])[:8]}"
    return f"{task_name(row)}\nduration {duration:.3f} s\n{worker}\nstate {row_word(row)}"


def render_timeline(rows: list[dict], now_ms: int) -> str:
    """One row per worker pid, one bar per started task, coloured by function, on a time axis in
    seconds from the first start; hovering a bar shows its details (its title).

    Flat HTML: absolutely placed spans with inline styles inside one div (no SVG, which
    JupyterLab's sanitizer strips from the outputs of a notebook it does not trust, as a cloned
    one; no nested div, so the drawing is one `<div class='shoal-timeline'>...</div>`)."""
    started = [row for row in rows if row.get("start_time_ms") and row.get("worker_pid") is not None]
    if not started:
        return "<div class='shoal-timeline'></div>"
    colours = function_colours(started)
    pids = sorted({row["worker_pid"] for row in started})
    begin = min(row["start_time_ms"] for row in started)
    end = max((row.get("end_time_ms") or now_ms) for row in started)
    span = max(end - begin, 1)
    scale = PLOT_WIDTH / span
    plot_height = ROW_HEIGHT * len(pids)
    bar_height = ROW_HEIGHT - 6
    parts = [
        f"<div class='shoal-timeline' style='position:relative;width:{LABEL_WIDTH + PLOT_WIDTH + 10}px;"
        f"height:{plot_height + AXIS_HEIGHT}px;font-family:sans-serif;font-size:11px;line-height:{bar_height}px'>"
    ]
    for index, pid in enumerate(pids):
        y = index * ROW_HEIGHT
        parts.append(
            f"<span class='shoal-worker' data-worker-pid='{pid}' style='position:absolute;left:0;top:{y + 3}px;"
            f"color:#555'>worker {pid}</span>"
        )
        for row in started:
            if row["worker_pid"] != pid:
                continue
            x = LABEL_WIDTH + (row["start_time_ms"] - begin) * scale
            width = max(((row.get("end_time_ms") or now_ms) - row["start_time_ms"]) * scale, 1.5)
            word = row_word(row)
            border = (
                f"border:1.5px solid {_FAILED_STROKE};box-sizing:border-box;" if word in ("failed", "cancelled") else ""
            )
            opacity = "opacity:0.55;" if word == "running" else ""
            parts.append(
                f"<span class='shoal-task' data-task-id='{html.escape(str(row.get('task_id')))}' "
                f"data-function='{html.escape(task_name(row))}' title='{html.escape(_hover(row, now_ms))}' "
                f"style='position:absolute;left:{x:.1f}px;top:{y + 3}px;width:{width:.1f}px;height:{bar_height}px;"
                f"border-radius:2px;{border}{opacity}background:{colours[task_name(row)]}'></span>"
            )
    axis_y = plot_height + 2
    parts.append(
        f"<span class='shoal-axis' style='position:absolute;left:{LABEL_WIDTH}px;top:{axis_y}px;"
        f"width:{PLOT_WIDTH}px;height:0;border-top:1px solid #999'></span>"
    )
    step = _tick_step_ms(span)
    tick = 0.0
    while tick <= span + 1e-9:
        x = LABEL_WIDTH + tick * scale
        parts.append(
            f"<span style='position:absolute;left:{x:.1f}px;top:{axis_y}px;height:4px;border-left:1px solid #999'>"
            f"</span><span class='shoal-tick' style='position:absolute;left:{x - 25:.1f}px;top:{axis_y + 5}px;"
            f"width:50px;text-align:center;color:#555'>{_tick_label(tick, step)}</span>"
        )
        tick += step
    parts.append("</div>")
    return "".join(parts)


def render_legend(rows: list[dict]) -> str:
    """A colour swatch and a task count per function."""
    started = [row for row in rows if row.get("start_time_ms") and row.get("worker_pid") is not None]
    colours = function_colours(started)
    counts: dict[str, int] = {}
    for row in started:
        counts[task_name(row)] = counts.get(task_name(row), 0) + 1
    items = [
        f"<span class='shoal-legend-item' data-function='{html.escape(name)}' style='margin-right:14px'>"
        f"<span style='display:inline-block;width:10px;height:10px;background:{colour};border-radius:2px;"
        f"margin-right:4px'></span>{html.escape(name)} ({counts[name]})</span>"
        for name, colour in colours.items()
    ]
    return f"<div class='shoal-legend'>{''.join(items)}</div>"
