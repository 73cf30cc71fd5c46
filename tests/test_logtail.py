"""Reading logs with enormous lines: ``devenv logs --tail`` and the failure tails read
O(block) bytes whatever a line's length, cap a shown line, and show a ``\\r`` progress
line's last segment."""

from __future__ import annotations

import io
import time
from pathlib import Path

from devenv import logtail, proc
from devenv.commands import logs as logs_cmd
from devenv.loader import load
from devenv.services.support import follow_file

MB = 1024 * 1024


def _write_one_line(path: Path, size: int, head: bytes = b"", end: bytes = b"END") -> None:
    """``head``, then ``size`` bytes of one line, ending in ``end`` and a newline."""
    block = b"x" * MB
    with path.open("wb") as fh:
        fh.write(head)
        for _ in range(size // MB):
            fh.write(block)
        fh.write(end + b"\n")


def test_tail_of_a_200mb_line_reads_a_bounded_amount(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    _write_one_line(log, 200 * MB, head=b"first line\n")
    t0 = time.monotonic()
    tail = logtail.tail_file(log, 5)
    elapsed = time.monotonic() - t0
    # The old reader re-joined and re-counted everything read on each 8 KiB block:
    # quadratic, 17 s at 20 MB. This one stops after SCAN_LIMIT bytes, whatever the size.
    assert tail.bytes_read <= logtail.SCAN_LIMIT + logtail.BLOCK
    assert len(tail.lines) == 1
    shown = tail.lines[0]
    assert shown.startswith("… [over 8.0 MB line cut] ")
    assert shown.endswith("xEND")
    assert len(shown) < logtail.LINE_CAP + 100
    assert elapsed < 5


def test_logs_command_tails_a_200mb_line_quickly(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "steps.yaml").write_text("name: t-logtail\nsteps:\n  big: {run: 'true'}\n")
    project = load(root / "steps.yaml")
    logs = project.state_dir / "logs"
    logs.mkdir(parents=True)
    _write_one_line(logs / "big.log", 200 * MB, head=b"before\n")
    t0 = time.monotonic()
    lines = list(logs_cmd.lines_for(project, "big", tail=5))
    assert time.monotonic() - t0 < 5  # generous: the quadratic reader never finished
    assert len(lines) == 1 and lines[0].endswith("xEND") and "line cut]" in lines[0]


def test_a_line_whose_start_is_found_says_how_much_was_cut(tmp_path: Path) -> None:
    log = tmp_path / "mid.log"
    _write_one_line(log, 3 * MB, head=b"a\nb\n")
    with log.open("ab") as fh:
        fh.write(b"last\n")
    tail = logtail.tail_file(log, 3)
    assert tail.lines[0] == "b"
    assert tail.lines[1].startswith("… [3.0 MB line cut] x")
    assert tail.lines[1].endswith("END")
    assert tail.lines[2] == "last"
    assert logtail.tail(log, 2).splitlines()[1] == "last"


def test_progress_line_shows_its_last_segment(tmp_path: Path) -> None:
    log = tmp_path / "bar.log"
    bar = b"".join(b"\rprogress %d%%" % (i % 100) for i in range(400_000))
    log.write_bytes(b"start\n" + bar + b"\rdone 100%\r\nafter\n")
    assert logtail.tail_file(log, 3).lines == ["start", "done 100%", "after"]
    # the whole-file reader (devenv logs without --tail) and follow agree
    assert list(follow_file(log, None, follow=False)) == ["start", "done 100%", "after"]


def test_small_blocks_give_the_same_lines_as_splitting() -> None:
    text = b"one\n\ntwo\r\nthree\nfour"
    for block in (1, 2, 3, 5, 64):
        got = logtail.last_lines(io.BytesIO(text), 10, block=block).lines
        assert got == ["one", "", "two", "three", "four"], block
        assert logtail.last_lines(io.BytesIO(text + b"\n"), 2, block=block).lines == [
            "three", "four"]
    assert logtail.last_lines(io.BytesIO(b""), 3).lines == []
    assert logtail.last_lines(io.BytesIO(b"a\n"), 0).lines == []


def test_whole_file_reader_caps_a_long_line() -> None:
    data = b"a\n" + b"y" * (3 * logtail.LINE_CAP) + b"\nb\n"
    lines = list(logtail.all_lines(io.BytesIO(data), block=1000))
    assert lines[0] == "a" and lines[2] == "b"
    assert lines[1].startswith("… [32.0 KB line cut] y")
    assert lines[1].count("y") == logtail.LINE_CAP


def test_tail_of_a_text_reads_as_a_logs_tail() -> None:
    # a command's output (ProcessError, a container's logs) is cut as a log file is
    assert logtail.tail_text("a\nb\nc\n\n\n", 2) == ["b", "c"]
    assert logtail.tail_text("", 3) == []
    assert logtail.tail_text("only", 3) == ["only"]
    assert logtail.tail_text("x\r\nstep 1\rstep 2\n", 5) == ["x", "step 2"]
    long = logtail.tail_text("z" * (2 * logtail.LINE_CAP) + "\nend", 2)
    assert long[0].startswith(f"… [{logtail.LINE_CAP / 1024:.1f} KB line cut] z")
    assert long[1] == "end"
    assert logtail.tail(None, 3) == ""


def test_process_error_shows_the_tail_of_the_output() -> None:
    out = "".join(f"line {i}\n" for i in range(100))
    err = proc.ProcessError(["false"], 1, out)
    shown = str(err).splitlines()
    assert shown[0] == "command exited with 1: false"
    assert shown[1:] == [f"  | line {i}" for i in range(100 - proc.TAIL_LINES, 100)]
