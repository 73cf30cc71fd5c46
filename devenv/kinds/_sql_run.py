"""The work of ``kind: sql``: split the files into statements, run them in one transaction,
report a failure as ``FILE:LINE: the server's message``.

``python -m devenv.kinds._sql_run JSON`` (devenv's interpreter: it needs psycopg).
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from typing import Any

PROG = "sql"




class SqlSyntaxError(Exception):
    """Something the splitter refuses (psql meta-commands, an unterminated COPY)."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        super().__init__(message)


@dataclass(frozen=True)
class Statement:
    """One statement of a file: its text (with the comments before it), the line its
    text starts on, the line of its first word, and the data of a ``COPY FROM stdin``."""

    text: str
    start_line: int
    line: int
    copy_data: str | None = None
    data_line: int = 0
    offset: int = 0  # where the statement proper starts in ``text`` (after comments)

    @property
    def body(self) -> str:
        return self.text[self.offset:]

    @property
    def first_word(self) -> str:
        m = re.match(r"[A-Za-z]+", self.body)
        return m.group(0).upper() if m else ""


_DOLLAR = re.compile(r"\$([A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$")
_COPY_STDIN = re.compile(r"^\s*COPY\b.*\bFROM\s+STDIN\b", re.I | re.S)
_IDENT_CHAR = re.compile(r"[A-Za-z0-9_$\x80-\uffff]")


def split(text: str) -> list[Statement]:
    """The statements of a SQL file, in order."""
    out: list[Statement] = []
    n = len(text)
    i = 0
    line = 1
    start, start_line = 0, 1
    first: int | None = None
    offset = 0
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
            continue
        if c in " \t\r\f":
            i += 1
            continue
        if text.startswith("--", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            depth = 0
            while i < n:
                if text.startswith("/*", i):
                    depth += 1
                    i += 2
                elif text.startswith("*/", i):
                    depth -= 1
                    i += 2
                    if depth == 0:
                        break
                else:
                    line += text[i] == "\n"
                    i += 1
            continue
        if first is None:
            first, offset = line, i - start
            if c == "\\":
                word = text[i:].split(None, 1)[0]
                raise SqlSyntaxError(line, f"psql meta-command {word} is not supported; run "
                                           "the file with psql in a shell step instead")
        if c == "'" or c == '"':
            escapes = c == "'" and i > 0 and text[i - 1] in "eE" and (
                i < 2 or not _IDENT_CHAR.match(text[i - 2]))
            j = i + 1
            while j < n:
                ch = text[j]
                if escapes and ch == "\\":
                    j += 2
                    continue
                if ch == c:
                    if j + 1 < n and text[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            line += text.count("\n", i, j + 1)
            i = j + 1
            continue
        if c == "$" and (i == 0 or not _IDENT_CHAR.match(text[i - 1])):
            m = _DOLLAR.match(text, i)
            if m is not None:
                tag = m.group(0)
                end = text.find(tag, m.end())
                j = n if end < 0 else end + len(tag)
                line += text.count("\n", i, j)
                i = j
                continue
        if c == ";":
            body = text[start:i + 1]
            assert first is not None
            i += 1
            if _COPY_STDIN.match(body[offset:]):
                # The data starts on the next line and ends with a line holding "\."
                nl = text.find("\n", i)
                data_start = n if nl < 0 else nl + 1
                data_line = line + 1
                m = re.compile(r"^\\\.[ \t\r]*$", re.M).search(text, data_start)
                if m is None:
                    raise SqlSyntaxError(first, "COPY ... FROM stdin without its data "
                                                "ending in a line \\.")
                data = text[data_start:m.start()]
                out.append(Statement(body, start_line, first, data, data_line, offset))
                line += text.count("\n", i, m.end())
                i = m.end()
            else:
                out.append(Statement(body, start_line, first, offset=offset))
            start, start_line, first = i, line, None
            continue
        i += 1
    if first is not None:
        out.append(Statement(text[start:], start_line, first, offset=offset))
    return out


# --------------------------------------------------------------------------- running

_TX_CONTROL = {"BEGIN", "COMMIT", "END", "START"}
_COPY_LINE = re.compile(r"\bCOPY [^,]+, line (\d+)")


def _error_line(stmt: Statement, diag: Any) -> int:
    pos = getattr(diag, "statement_position", None)
    if pos:
        try:
            return stmt.start_line + stmt.text[: int(pos) - 1].count("\n")
        except ValueError:
            pass
    context = getattr(diag, "context", None) or ""
    m = _COPY_LINE.search(context)
    if m is not None and stmt.copy_data is not None:
        return stmt.data_line + int(m.group(1)) - 1
    return stmt.line


def _server_message(exc: Any) -> str:
    diag = exc.diag
    text = f"{diag.severity or 'ERROR'}: {diag.message_primary or str(exc).strip()}"
    for label, value in (("DETAIL", diag.message_detail), ("HINT", diag.message_hint)):
        if value:
            text += f"\n  {label}: {value}"
    return text


def run(files: list[str]) -> int:
    """Run ``files`` in one transaction; 0 when committed, 1 on an error."""
    import psycopg

    parsed: list[tuple[str, list[Statement]]] = []
    for name in files:
        try:
            with open(name, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            return _fail(f"file not found: {name} (in {os.getcwd()})")
        except (OSError, UnicodeDecodeError) as exc:
            return _fail(f"{name}: cannot read: {exc}")
        try:
            parsed.append((name, split(text)))
        except SqlSyntaxError as exc:
            return _fail(f"{name}:{exc.line}: {exc}")
    try:
        conn = psycopg.connect(os.environ.get("DATABASE_URL", ""),
                               application_name="devenv-sql")
    except psycopg.OperationalError as exc:
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        return _fail(f"cannot connect to the database: {msg}")
    conn.add_notice_handler(lambda d: print(f"{d.severity}: {d.message_primary}", flush=True))
    total = 0
    with conn:
        try:
            for name, statements in parsed:
                count = 0
                for stmt in statements:
                    word = stmt.first_word
                    if word in _TX_CONTROL and not re.match(
                            r"START\s+(?!TRANSACTION)", stmt.body, re.I):
                        print(f"{PROG}: {name}:{stmt.line}: {word} skipped: all the files run "
                              "in one transaction", flush=True)
                        continue
                    if word == "ROLLBACK" and not re.search(r"\bTO\b", stmt.body, re.I):
                        conn.rollback()
                        return _fail(f"{name}:{stmt.line}: ROLLBACK is not allowed: all the "
                                     "files run in one transaction")
                    try:
                        if stmt.copy_data is not None:
                            with conn.cursor() as cur, cur.copy(stmt.text) as cp:
                                cp.write(stmt.copy_data)
                        else:
                            conn.execute(stmt.text)
                    except psycopg.Error as exc:
                        conn.rollback()
                        line = _error_line(stmt, exc.diag)
                        print(f"{PROG}: {name}:{line}: {_server_message(exc)}",
                              file=sys.stderr, flush=True)
                        return _fail("rolled back: nothing from "
                                     f"{', '.join(files)} was kept")
                    count += 1
                total += count
                print(f"{PROG}: {name}: {count} statement{'s' if count != 1 else ''}",
                      flush=True)
            conn.commit()
        except psycopg.OperationalError as exc:
            return _fail(f"lost the database connection: {str(exc).strip()}")
    print(f"{PROG}: committed {total} statement{'s' if total != 1 else ''} from "
          f"{len(files)} file{'s' if len(files) != 1 else ''}", flush=True)
    return 0


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)
    return 1


def main(argv: list[str]) -> int:
    """Entry point: ``python -m devenv.kinds._sql_run JSON``."""
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if len(argv) != 2:
        return _fail("usage: python -m devenv.kinds._sql_run JSON (devenv runs this)")
    opts = json.loads(argv[1])
    return run(list(opts["files"]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
