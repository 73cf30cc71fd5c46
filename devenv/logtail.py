"""Reading the lines of a log for people: the last N from the end, or all of them, with
every shown line capped.

Logs can hold one enormous line: a progress bar that redraws itself with ``\\r`` only never
ends its line, and a step may print megabytes of JSON at once. The reader therefore works
in fixed blocks and keeps at most ``LINE_CAP`` bytes of any line, so its time and memory do
not depend on line length. A line with ``\\r`` in it shows its last segment (what a
terminal shows); a line longer than the cap shows its end, after a marker saying how much
was cut (``… [12.3 MB line cut] ...``). From the end it reads at most ``SCAN_LIMIT`` bytes
looking for the start of a line; a line whose start lies further back says so
(``… [over 8.0 MB line cut] ...``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

BLOCK = 64 * 1024
LINE_CAP = 16 * 1024  # bytes of one line that are shown
SCAN_LIMIT = 8 * 1024 * 1024  # bytes read from the end before giving up on a line's start


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    return f"{n / 1024:.1f} KB"


def _show(raw: bytes, cut: int, start_known: bool = True) -> str:
    """One line as shown: its last ``\\r`` segment, with a marker when bytes were cut."""
    body = raw.rstrip(b"\r")  # CRLF, or a progress bar that ends on \r
    cr = body.rfind(b"\r")
    if cr >= 0:
        # The earlier segments were overwritten on a terminal: not a cut worth a marker.
        return body[cr + 1:].decode(errors="replace")
    text = body.decode(errors="replace")
    if not cut:
        return text
    if start_known:
        return f"… [{_size(cut)} line cut] {text}"
    return f"… [over {_size(cut)} line cut] {text}"  # its start lies beyond the scan


@dataclass(frozen=True)
class Tail:
    lines: list[str]
    bytes_read: int  # what reading the tail cost: bounded, whatever the lines' length


def last_lines(fh: BinaryIO, lines: int, *, cap: int = LINE_CAP, scan: int = SCAN_LIMIT,
               block: int = BLOCK) -> Tail:
    """The last ``lines`` lines of the open binary file ``fh``, read backwards in blocks."""
    end = fh.seek(0, os.SEEK_END)
    pos = end
    read = 0
    out: list[str] = []
    carry = b""  # read but not yet split, lying just before the current line's kept part
    line = b""  # the newest ``cap`` bytes of the line being assembled
    cut = 0  # bytes of that line dropped from its front
    first = True
    while lines > 0 and len(out) < lines:
        nl = carry.rfind(b"\n")
        if nl >= 0:
            line = carry[nl + 1:] + line
            carry = carry[:nl]
            if len(line) > cap:
                cut += len(line) - cap
                line = line[-cap:]
            out.append(_show(line, cut))
            line, cut = b"", 0
            continue
        line = carry + line
        carry = b""
        if len(line) > cap:
            cut += len(line) - cap
            line = line[-cap:]
        if pos == 0:
            if line or cut or out:
                out.append(_show(line, cut))
            break
        if read >= scan:
            # the scan stopped inside this line: show it as cut, unless enough whole
            # lines are already there (then a fragment would pass for a line)
            if cut or not out:
                out.append(_show(line, cut, start_known=False))
            break
        step = min(block, pos)
        pos -= step
        fh.seek(pos)
        carry = fh.read(step)
        read += len(carry)
        if first:
            first = False
            if carry.endswith(b"\n"):
                carry = carry[:-1]  # a file's last newline ends its last line
    out.reverse()
    return Tail(out, read)


def tail_file(path: Path, lines: int, **limits: int) -> Tail:
    """:func:`last_lines` of the file at ``path`` (no lines when it cannot be read)."""
    try:
        with path.open("rb") as fh:
            return last_lines(fh, lines, **limits)
    except OSError:
        return Tail([], 0)


def tail(log: Path | None, lines: int) -> str:
    """The last ``lines`` lines of the log file ``log``, one string; "" when there is none
    or it cannot be read."""
    if log is None:
        return ""
    return "\n".join(tail_file(log, lines).lines)


def tail_text(text: str, lines: int) -> list[str]:
    """The last ``lines`` lines of ``text`` (a command's output), shown as a log's are;
    blank lines at its end do not count."""
    # Through the same reader as files, so a long or \r-redrawn line reads the same
    # in an error message as in the log.
    data = text.rstrip("\n").encode(errors="replace")
    return last_lines(io.BytesIO(data), lines).lines


class LineSplitter:
    """Splits a byte stream into shown lines, holding at most ``cap`` bytes of a line
    that has not ended yet (for reading a whole log, or following one as it grows)."""

    def __init__(self, cap: int = LINE_CAP) -> None:
        self.cap = cap
        self.partial = b""
        self.cut = 0

    def feed(self, chunk: bytes) -> list[str]:
        out: list[str] = []
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                break
            piece = self.partial + chunk[start:nl]
            if len(piece) > self.cap:
                self.cut += len(piece) - self.cap
                piece = piece[-self.cap:]
            out.append(_show(piece, self.cut))
            self.partial, self.cut = b"", 0
            start = nl + 1
        self.partial += chunk[start:]
        if len(self.partial) > self.cap:
            self.cut += len(self.partial) - self.cap
            self.partial = self.partial[-self.cap:]
        return out

    def flush(self) -> list[str]:
        """The unfinished last line, if any."""
        if not self.partial and not self.cut:
            return []
        shown = _show(self.partial, self.cut)
        self.partial, self.cut = b"", 0
        return [shown]


def all_lines(fh: BinaryIO, cap: int = LINE_CAP, block: int = BLOCK) -> Iterator[str]:
    """Every line of ``fh`` from its current position, each capped."""
    split = LineSplitter(cap)
    while chunk := fh.read(block):
        yield from split.feed(chunk)
    yield from split.flush()
