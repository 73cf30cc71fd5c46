"""dumpfiles.unpack: a snapshot file arriving as a stream (a pull from the remote cache)
is split into its header and a bare pg_dump archive, with every check read_header and
verify make on a file, in the same pass. And choose_tool asks for the service's tools only
when no local one will do."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devenv.postgres import database, dumpfiles

DUMP = b"PGDMP" + bytes(range(256)) * 40 + b"\n\n tail"  # any bytes: unpack never parses them


def _snapshot(tmp_path: Path, dump: bytes = DUMP) -> Path:
    file = tmp_path / "s.devenv-snapshot"
    header = dumpfiles.Header("proj", "db", "n", "key1", ["a", "b"], {"a": "fa"}, 150004, 15,
                              1.0)
    dumpfiles.write(file, header, lambda sink: sink(dump))
    return file


def _chunks(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i:i + size]


@pytest.mark.parametrize("size", [1, 7, 100, 1 << 20])
def test_unpack_gives_the_header_and_the_bare_dump(tmp_path: Path, size: int) -> None:
    """Whatever the chunks' size (the header line split across many of them, or all in
    one), the result is what read_header and the file's dump part give."""
    file = _snapshot(tmp_path)
    want, offset = dumpfiles.read_header(file)
    out = tmp_path / "out.dump"
    got = dumpfiles.unpack(_chunks(file.read_bytes(), size), out, "the pulled snapshot")
    assert got == want
    assert out.read_bytes() == DUMP == file.read_bytes()[offset:]
    assert got.sha256 == hashlib.sha256(DUMP).hexdigest()


def _refused(tmp_path: Path, data: bytes, match: str) -> None:
    with pytest.raises(dumpfiles.SnapshotFileError, match=match):
        dumpfiles.unpack(_chunks(data, 64), tmp_path / "out.dump", "the pulled snapshot")


def test_unpack_refuses_what_verify_refuses(tmp_path: Path) -> None:
    data = _snapshot(tmp_path).read_bytes()
    _refused(tmp_path, data[:-3], r"^the pulled snapshot is truncated: its header promises "
             rf"a dump of {len(DUMP)} bytes, the file holds {len(DUMP) - 3}")
    _refused(tmp_path, data + b"xy", r"^the pulled snapshot is damaged: it holds 2 bytes more")
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF
    _refused(tmp_path, bytes(flipped), r"^the pulled snapshot is damaged: the dump's sha256 "
             "does not match its header")


def test_unpack_refuses_what_read_header_refuses(tmp_path: Path) -> None:
    data = _snapshot(tmp_path).read_bytes()
    _refused(tmp_path, DUMP, r"^the pulled snapshot is a bare pg_dump archive")
    _refused(tmp_path, b"DEVENV-SNAPSHOT 9\n{}\n" + DUMP, r"of a format this devenv does not")
    _refused(tmp_path, b"hello", r"is not a devenv snapshot file")
    _refused(tmp_path, b"", r"is not a devenv snapshot file")
    end = data.index(b"\n", len(dumpfiles.MAGIC))
    _refused(tmp_path, data[:end], r"is truncated: its header line is incomplete")
    _refused(tmp_path, dumpfiles.MAGIC + b"{not json\n" + DUMP, r"has a damaged header \(not JSON")
    _refused(tmp_path, dumpfiles.MAGIC + b'{"project": 1}\n' + DUMP,
             r"has a damaged header: 'project' is missing or of the wrong type")


def test_unpack_stops_reading_at_a_header_that_is_not_one(tmp_path: Path) -> None:
    """A stream that is not a snapshot is refused at its first bytes, not after all of it."""
    read = 0

    def endless() -> Iterator[bytes]:
        nonlocal read
        while True:
            read += 1
            yield b"GIF89a" + b"\0" * 1000

    with pytest.raises(dumpfiles.SnapshotFileError, match="is not a devenv snapshot file"):
        dumpfiles.unpack(endless(), tmp_path / "out.dump", "x")
    assert read == 1


def test_choose_tool_asks_for_the_service_only_when_no_local_tool_will_do(
        monkeypatch: pytest.MonkeyPatch) -> None:
    if not dumpfiles.local_tools("pg_restore"):
        pytest.skip("no local pg_restore")
    target = database.Target("127.0.0.1", 5432, "u", "pw", "db")
    asked: list[str] = []

    def service() -> dumpfiles.ServiceExec | None:
        asked.append("asked")
        return None

    tool = dumpfiles.choose_tool("pg_restore", target, "db", 9, service)
    assert tool.service is None and tool.where.startswith("local ") and asked == []
    # newer than any local pg_restore: the service is asked (and there is none here)
    with pytest.raises(dumpfiles.DumpError, match="does not run in a devenv service"):
        dumpfiles.choose_tool("pg_restore", target, "db", 99, service)
    assert asked == ["asked"]
    monkeypatch.setenv("DEVENV_PG_TOOLS", "local")
    with pytest.raises(dumpfiles.DumpError):
        dumpfiles.choose_tool("pg_restore", target, "db", 99, service)
    assert asked == ["asked"]  # forced local: never asked


def test_local_tools_lists_each_version_once() -> None:
    """Debian's /usr/bin/pg_restore is pg_wrapper, which runs one of the versioned
    binaries: it is not asked for a version, and each real binary is listed once."""
    tools = dumpfiles.local_tools("pg_restore")
    if not tools:
        pytest.skip("no local pg_restore")
    assert all(not os.path.realpath(p).endswith("/pg_wrapper") for p, _ in tools)
    assert len({Path(p).resolve() for p, _ in tools}) == len(tools)
    assert all(major >= 9 for _, major in tools)
