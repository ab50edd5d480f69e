"""Which notebook cell each line of worker output belongs to, and how it is shown there.

Pure state: records and submissions in, text chunks per cell out. No sockets, no threads, no
wall clock (`now` is an argument); `output_routing` wires it to the kernel's iopub channel.

    submitted(task_id, cell) ──▶ task → cell
    receive(records, now, current_cell) ──▶ split into lines ─▶ dedupe ─▶ rate-limit ─▶ prefix
                                  └─▶ unfinished line held ──┐                 │
    flush_due(now) ──▶ held text older than PARTIAL_LINE_DELAY_S ◀──┘           │
                   ──▶ "(repeated ×N across workers)" / "… N more lines" notes ◀┘
    display(record, current_cell) ──▶ the display's cell, after the task's unfinished line

A cell's lines get a `(task_name pid=N) ` prefix only once more than one task has streamed into
it or was submitted from it, so a single task's output reads as if printed locally.
Text without a newline (`print(..., end="")`, a progress bar redrawn with `\r`) is shown once it
has waited PARTIAL_LINE_DELAY_S; the rest of that line then follows as it comes. `\r` is passed
through, as ipykernel passes a local print's, so the notebook redraws the line (after a `\r`
the prefix is repeated). Another task's text in the same cell ends such an open line first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

__all__ = ["CellOutputState", "StreamChunk"]

MAX_LINES_PER_WINDOW = 200
RATE_WINDOW_S = 1.0
DEDUP_WINDOW_S = 1.0
MAX_TRACKED_TASKS = 100_000
MAX_TRACKED_CELLS = 1_000
PARTIAL_LINE_DELAY_S = 0.2  # as long as ipykernel holds a local print before sending it


@dataclass(frozen=True)
class StreamChunk:
    """Text for one cell's stdout or stderr.

    Attributes:
        cell: The key of the cell (its execute request's msg_id), or None when unknown.
        stream: "stdout" or "stderr".
        text: Whole lines, each ending in a newline (but for the unfinished line shown before a
            display, see `CellOutputState.display`).
    """

    cell: str | None
    stream: str
    text: str


@dataclass
class _Cell:
    submitted: int = 0
    streamed: set = field(default_factory=set)
    window_start: float = float("-inf")
    lines_in_window: int = 0
    suppressed: int = 0
    note_stream: str = "stdout"
    # Per stream, the (identity, stream) key whose line is shown but not ended: the cell's
    # output ends in the middle of that task's line.
    open_lines: dict = field(default_factory=dict)


@dataclass
class _Partial:
    """A line a task has begun and not ended."""

    cell: str | None
    prefix: str
    held: str = ""  # text not shown yet
    held_since: float = 0.0
    shown: bool = False  # the line's start is in the cell: what follows continues it as it is


@dataclass
class _Repeat:
    first_at: float
    tasks: set
    extra: int = 0


class CellOutputState:
    """Routes worker output records to cells, deduplicating and rate-limiting per cell.

    Args:
        max_lines_per_window: Lines a cell shows per rate window before the rest are counted.
        rate_window_s: Length of the rate window.
        dedup_window_s: How long an identical line from other tasks is folded into the first.
        partial_line_delay_s: How long text without a newline waits for the rest of its line
            before it is shown anyway.
    """

    def __init__(
        self,
        max_lines_per_window: int = MAX_LINES_PER_WINDOW,
        rate_window_s: float = RATE_WINDOW_S,
        dedup_window_s: float = DEDUP_WINDOW_S,
        partial_line_delay_s: float = PARTIAL_LINE_DELAY_S,
    ) -> None:
        self.max_lines_per_window = max_lines_per_window
        self.rate_window_s = rate_window_s
        self.dedup_window_s = dedup_window_s
        self.partial_line_delay_s = partial_line_delay_s
        self._task_cells: OrderedDict[str, str | None] = OrderedDict()
        self._cells: OrderedDict[str | None, _Cell] = OrderedDict()
        self._partial: OrderedDict[tuple, _Partial] = OrderedDict()
        self._repeats: dict[tuple, _Repeat] = {}

    # ------------------------------------------------------------------------------ events

    def submitted(self, task_id: str, cell: str | None) -> None:
        """Remember that `task_id` was submitted while `cell` was executing."""
        self._bind(task_id, cell)
        self._cell(cell).submitted += 1

    def cell_of(self, task_id: str | None) -> str | None:
        """The cell `task_id` was submitted from, or None when it is not known."""
        return self._task_cells.get(task_id) if task_id else None

    def receive(self, records: list[dict], now: float, current_cell: str | None) -> list[StreamChunk]:
        """Turn output records into per-cell text.

        Args:
            records: Dicts with task_id (hex or None), task_name, pid, stream and text.
            now: The current time, in seconds.
            current_cell: The cell executing now; output of tasks not submitted from a known cell
                (nested tasks, tasks submitted before the extension was loaded) goes there.

        Returns:
            Chunks to show, in order; consecutive lines for the same cell and stream are joined.
        """
        chunks = self.flush_due(now)
        for record in records:
            task_id = record.get("task_id")
            stream = "stderr" if record.get("stream") == "stderr" else "stdout"
            identity = (task_id, record.get("pid"))
            if task_id and task_id not in self._task_cells:
                self._bind(task_id, current_cell)  # its later lines stay with this cell
            cell_key = self._task_cells.get(task_id, current_cell) if task_id else current_cell
            key = (identity, stream)
            partial = self._partial.get(key)
            new_text = record.get("text") or ""
            if "\n" not in new_text:
                if new_text:
                    self._hold(key, partial, cell_key, record, new_text, now)
                continue
            pieces = ((partial.held if partial is not None else "") + new_text).split("\n")
            lines, tail = pieces[:-1], pieces[-1]
            self._partial.pop(key, None)
            cell = self._cell(cell_key if partial is None else partial.cell)
            cell.streamed.add(identity)
            if partial is not None and partial.shown:
                # The rest of a line already begun in its cell: never folded or cut short.
                rest = _continued(lines[0].rstrip("\r"), partial.prefix, self._prefixed(cell))
                self._emit(chunks, partial.cell, stream, key, rest + "\n", closes=True)
                lines = lines[1:]
            cell = self._cell(cell_key)
            prefix = _prefix_of(record)
            for line in lines:
                line = line.rstrip("\r")  # the notebook drops a \r before a newline too
                if self._is_repeat(cell_key, stream, line, identity, now):
                    continue
                if not self._within_rate(cell, stream, now):
                    continue
                shown = _with_prefix(line, prefix) if self._prefixed(cell) else line
                self._emit(chunks, cell_key, stream, key, shown + "\n")
            if tail:
                self._hold(key, None, cell_key, record, tail, now)
        return chunks

    def flush_partial_lines(self) -> list[StreamChunk]:
        """Every held unfinished line, now (before a line that must come after them)."""
        chunks: list[StreamChunk] = []
        for key in list(self._partial):
            self._show_held(chunks, key)
        return chunks

    def display(self, record: dict, current_cell: str | None) -> tuple[str | None, list[StreamChunk]]:
        """Place a display record (rich output) of a task.

        Args:
            record: The record that carried it (task_id, pid).
            current_cell: The cell executing now, for tasks not submitted from a known cell.

        Returns:
            The display's cell, and the task's unfinished lines (text printed without a newline
            before the display), which must be shown first. Displays are never folded or
            rate-limited.
        """
        task_id = record.get("task_id")
        if task_id and task_id not in self._task_cells:
            self._bind(task_id, current_cell)
        cell_key = self._task_cells.get(task_id, current_cell) if task_id else current_cell
        identity = (task_id, record.get("pid"))
        chunks: list[StreamChunk] = []
        for stream in ("stdout", "stderr"):
            key = (identity, stream)
            self._show_held(chunks, key, keep_back_returns=False)
            partial = self._partial.pop(key, None)
            if partial is not None:
                cell = self._cell(partial.cell)
                if cell.open_lines.get(stream) == key:
                    del cell.open_lines[stream]  # the display ends the line
        return cell_key, chunks

    def flush_due(self, now: float) -> list[StreamChunk]:
        """Unfinished lines that have waited long enough, and the notes whose window has ended:
        folded repeats and rate-limited line counts."""
        chunks: list[StreamChunk] = []
        for key, partial in list(self._partial.items()):
            if partial.held and now - partial.held_since >= self.partial_line_delay_s:
                self._show_held(chunks, key, now=now)
        for key in [key for key, repeat in self._repeats.items() if now - repeat.first_at >= self.dedup_window_s]:
            repeat = self._repeats.pop(key)
            if repeat.extra:
                cell_key, stream, line = key
                text = f"{line} (repeated ×{repeat.extra} across workers)\n"
                _append(chunks, StreamChunk(cell_key, stream, text))
        for cell_key, cell in self._cells.items():
            if cell.suppressed and now - cell.window_start >= self.rate_window_s:
                text = f"… {cell.suppressed} more lines (output rate-limited to {self.max_lines_per_window} lines/s)\n"
                _append(chunks, StreamChunk(cell_key, cell.note_stream, text))
                cell.suppressed = 0
        return chunks

    def next_due(self) -> float | None:
        """When `flush_due` next has a note to give, or None when none is pending."""
        times = [repeat.first_at + self.dedup_window_s for repeat in self._repeats.values() if repeat.extra]
        times += [cell.window_start + self.rate_window_s for cell in self._cells.values() if cell.suppressed]
        times += [
            partial.held_since + self.partial_line_delay_s
            for partial in self._partial.values()
            if partial.held.rstrip("\r")
        ]
        return min(times) if times else None

    # ----------------------------------------------------------------------------- helpers

    def _hold(self, key: tuple, partial: _Partial | None, cell_key, record: dict, text: str, now: float) -> None:
        """Keep `text` (no newline in it) until its line ends or it has waited long enough."""
        if partial is None:
            partial = self._partial[key] = _Partial(cell=cell_key, prefix=_prefix_of(record))
            if len(self._partial) > MAX_TRACKED_TASKS:
                self._partial.popitem(last=False)
        if not partial.held:
            partial.held_since = now
        partial.held += text

    def _show_held(self, chunks: list, key: tuple, now: float = 0.0, keep_back_returns: bool = True) -> None:
        """Show a task's held text in its cell; the line stays open for the rest of it."""
        partial = self._partial.get(key)
        if partial is None or not partial.held:
            return
        # A trailing \r is kept back: a newline after it would undo it, other text redraws the line.
        text = partial.held.rstrip("\r") if keep_back_returns else partial.held
        if not text:
            return
        cell = self._cell(partial.cell)
        identity, stream = key
        cell.streamed.add(identity)
        if partial.shown:
            shown = _continued(text, partial.prefix, self._prefixed(cell))
        else:
            shown = _with_prefix(text, partial.prefix) if self._prefixed(cell) else text
        self._emit(chunks, partial.cell, stream, key, shown)
        partial.held = partial.held[len(text) :]
        partial.held_since = now
        partial.shown = True
        cell.open_lines[stream] = key

    def _emit(self, chunks: list, cell_key, stream: str, key: tuple, text: str, closes: bool = False) -> None:
        """Add `text` of task line `key` to its cell, first ending another task's open line there."""
        cell = self._cell(cell_key)
        open_key = cell.open_lines.get(stream)
        if open_key is not None and open_key != key:
            _append(chunks, StreamChunk(cell_key, stream, "\n"))
            interrupted = self._partial.get(open_key)
            if interrupted is not None:
                interrupted.shown = False  # its rest starts a line of its own
            del cell.open_lines[stream]
        _append(chunks, StreamChunk(cell_key, stream, text))
        if closes and cell.open_lines.get(stream) == key:
            del cell.open_lines[stream]

    def _cell(self, cell_key: str | None) -> _Cell:
        cell = self._cells.get(cell_key)
        if cell is None:
            cell = self._cells[cell_key] = _Cell()
            if len(self._cells) > MAX_TRACKED_CELLS:
                self._cells.popitem(last=False)
        return cell

    def _bind(self, task_id: str, cell_key: str | None) -> None:
        self._task_cells[task_id] = cell_key
        if len(self._task_cells) > MAX_TRACKED_TASKS:
            self._task_cells.popitem(last=False)

    @staticmethod
    def _prefixed(cell: _Cell) -> bool:
        return len(cell.streamed) > 1 or cell.submitted > 1

    def _is_repeat(self, cell_key, stream: str, line: str, identity: tuple, now: float) -> bool:
        # Blank lines and a task repeating its own line (a loop printing "tick") are never folded.
        if not line.strip():
            return False
        key = (cell_key, stream, line)
        repeat = self._repeats.get(key)
        if repeat is None or now - repeat.first_at >= self.dedup_window_s:
            self._repeats[key] = _Repeat(first_at=now, tasks={identity})
            return False
        if identity in repeat.tasks:
            return False
        repeat.tasks.add(identity)
        repeat.extra += 1
        return True

    def _within_rate(self, cell: _Cell, stream: str, now: float) -> bool:
        # receive() flushes due notes first, so a window that ended has no count left over.
        if now - cell.window_start >= self.rate_window_s:
            cell.window_start = now
            cell.lines_in_window = 0
        if cell.lines_in_window < self.max_lines_per_window:
            cell.lines_in_window += 1
            return True
        cell.suppressed += 1
        cell.note_stream = stream
        return False


def _prefix_of(record: dict) -> str:
    return f"({record.get('task_name')} pid={record.get('pid')}) "


def _with_prefix(text: str, prefix: str) -> str:
    """`text` prefixed, again after each `\r` (which returns to the line's start)."""
    return prefix + text.replace("\r", "\r" + prefix)


def _continued(text: str, prefix: str, prefixed: bool) -> str:
    """The rest of a shown line: prefixed only after a `\r`, in a prefixed cell."""
    return text.replace("\r", "\r" + prefix) if prefixed else text


def _append(chunks: list[StreamChunk], chunk: StreamChunk) -> None:
    if chunks and chunks[-1].cell == chunk.cell and chunks[-1].stream == chunk.stream:
        chunks[-1] = StreamChunk(chunk.cell, chunk.stream, chunks[-1].text + chunk.text)
    else:
        chunks.append(chunk)
