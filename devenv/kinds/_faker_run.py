"""The work of ``kind: faker``: check the tables and columns against the live database,
order the tables by their foreign keys, generate the rows and stream them in with COPY,
all in one transaction.

``python -m devenv.kinds._faker_run JSON`` (devenv's interpreter: psycopg and Faker).

Each column draws from its own random stream, seeded from ``seed``, the table and the
column: the values of a column do not change when another column is added or removed,
and a larger ``rows`` only appends.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from devenv.errors import did_you_mean
from devenv.kinds.faker_data import ColumnSpec, SpecError, TableSpec, faker_for, parse_tables

PROG = "faker"
BATCH = 2000


class Fail(Exception):
    """A problem to report (already phrased for the user); exit code 1."""


@dataclass
class Table:
    """A table of the step, resolved in the database."""

    spec: TableSpec
    oid: int
    schema: str
    name: str
    columns: dict[str, str]  # column -> type, in table order

    @property
    def shown(self) -> str:
        return f"{self.schema}.{self.name}"


class Context:
    """Where messages point: steps.yaml's file:line and the step's key path."""

    def __init__(self, opts: dict[str, Any]) -> None:
        self.step = opts.get("step", "?")
        self.where = opts.get("tables_at") or opts.get("where") or ""
        self.lines: dict[str, int] = dict(opts.get("lines") or {})

    def at(self, path: str) -> str:
        """``file:line`` of the deepest key of ``path`` steps.yaml has (else tables:)."""
        file = self.where.rsplit(":", 1)[0]
        cut = len(path)
        while cut > 0:
            line = self.lines.get(path[:cut])
            if line is not None and file:
                return f"{file}:{line}"
            cut = path.rfind(".", 0, cut)
        return self.where

    def fail(self, path: str, message: str) -> Fail:
        key = f"steps.{self.step}.tables.{path}" if path else f"steps.{self.step}"
        return Fail(f"{self.at(path)}: {key}: {message}")


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


# --------------------------------------------------------------------------- the catalog


def _catalog(conn: Any) -> list[tuple[int, str, str, bool]]:
    """(oid, schema, table, visible on the search_path) of every user table."""
    rows = conn.execute(
        "SELECT c.oid, n.nspname, c.relname, pg_table_is_visible(c.oid) "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', "
        "'information_schema') AND n.nspname NOT LIKE 'pg\\_toast%' "
        "ORDER BY n.nspname, c.relname").fetchall()
    return [(int(r[0]), str(r[1]), str(r[2]), bool(r[3])) for r in rows]


def _find_table(catalog: list[tuple[int, str, str, bool]], ctx: Context, path: str,
                name: str) -> tuple[int, str, str]:
    if "." in name:
        schema, table = name.split(".", 1)
        for oid, s, t, _ in catalog:
            if s == schema and t == table:
                return oid, s, t
    else:
        for oid, s, t, visible in catalog:
            if t == name and visible:
                return oid, s, t
    known = [f"{s}.{t}" for _, s, t, _ in catalog] + [t for _, _, t, v in catalog if v]
    hint = did_you_mean(name, known)
    if not hint and not catalog:
        hint = " (the database has no tables yet: does this step need the step that " \
               "creates them?)"
    raise ctx.fail(path, f"no table {name} in the database{hint}")


def _columns(conn: Any, oid: int) -> dict[str, str]:
    rows = conn.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (oid,)).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def _order(tables: list[Table], edges: set[tuple[int, int]], ctx: Context) -> list[Table]:
    """Tables with the ones they reference first; declaration order otherwise."""
    by_oid = {t.oid: t for t in tables}
    needs: dict[int, set[int]] = {t.oid: set() for t in tables}
    for child, parent in edges:
        if child != parent and child in by_oid and parent in by_oid:
            needs[child].add(parent)
    out: list[Table] = []
    done: set[int] = set()
    while len(out) < len(tables):
        ready = [t for t in tables if t.oid not in done and needs[t.oid] <= done]
        if not ready:
            left = [t.shown for t in tables if t.oid not in done]
            raise ctx.fail("", f"the tables {', '.join(left)} reference each other in a "
                               "cycle; fill them in separate steps (one ref: side nullable)")
        out.append(ready[0])
        done.add(ready[0].oid)
    return out


# --------------------------------------------------------------------------- generating


def speed_up(fake: Any) -> None:
    """Make Faker's weighted picks cheap, without changing a single value.

    Most person and address providers pick from an ``OrderedDict`` of weights (thousands
    of first names). ``BaseProvider.random_elements`` copies the weights and accumulates
    them on every call, which costs tens of microseconds per value; ``random.choices``
    given the same cumulative weights draws exactly the same items from the same random
    numbers. So each provider of this (private) Faker gets a ``random_elements`` that
    computes the cumulative weights once per collection; anything else goes to Faker's
    own method (and providers that override it keep theirs).
    tests/kinds/test_faker.py checks the values stay identical.
    """
    import types
    from collections import OrderedDict
    from itertools import accumulate

    from faker.providers import BaseProvider

    if not hasattr(BaseProvider, "__use_weighting__"):
        return  # a Faker this was not written against: leave it alone
    cache: dict[int, tuple[Any, tuple[Any, ...], list[float]]] = {}
    for provider in fake._factories[0].providers:
        if type(provider).random_elements is not BaseProvider.random_elements:
            continue
        original = provider.random_elements

        def fast(self: Any, elements: Any = ("a", "b", "c"), length: int | None = None,
                 unique: bool = False, use_weighting: bool | None = None,
                 _original: Any = original) -> Any:
            if not unique and length is not None and isinstance(elements, OrderedDict):
                weighted = use_weighting if use_weighting is not None \
                    else self.__use_weighting__
                if weighted:
                    hit = cache.get(id(elements))
                    if hit is None or hit[0] is not elements:
                        hit = (elements, tuple(elements),
                               list(accumulate(elements.values())))
                        cache[id(elements)] = hit
                    return self.generator.random.choices(hit[1], cum_weights=hit[2],
                                                         k=length)
            return _original(elements, length, unique, use_weighting)

        provider.random_elements = types.MethodType(fast, provider)


def _stream(seed: int, table: str, column: str, purpose: str = "") -> random.Random:
    # str seeds are hashed with SHA-512 by random.Random: the same across runs and
    # machines (unlike hash()).
    return random.Random(f"{seed}\x00{table}\x00{column}\x00{purpose}")


def _hashable(kwargs: dict[str, Any]) -> dict[str, Any]:
    # Faker's unique proxy keys its memory on the arguments: lists must be tuples.
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def _batcher(col: ColumnSpec, table: Table, fake: Any, seed: int,
             refs: dict[str, list[Any]], ctx: Context) -> Callable[[int], list[Any]]:
    """A function giving the next ``n`` values of a column."""
    gen = fake._factories[0]
    rng = _stream(seed, table.spec.name, col.name)
    make: Callable[[int], list[Any]]
    if col.mode == "value":
        value = col.value

        def make(n: int) -> list[Any]:
            return [value] * n
    elif col.mode == "ref":
        keys = refs[col.ref]
        choices = rng.choices

        def make(n: int) -> list[Any]:
            return choices(keys, k=n)
    else:
        if col.mode == "unique":
            fn = getattr(fake.unique, col.provider)
            kwargs = _hashable(dict(col.kwargs))
            args = tuple(tuple(a) if isinstance(a, list) else a for a in col.args)
        else:
            fn = getattr(gen, col.provider)
            kwargs = dict(col.kwargs)
            args = col.args
        done = [0]

        def make(n: int) -> list[Any]:
            from faker.exceptions import UniquenessException

            # Faker's providers draw from generator.random: point it at this column's
            # stream for the length of the batch.
            gen.random = rng
            out: list[Any] = []
            try:
                if col.mode == "unique":
                    # A loop, not a comprehension: the row that ran out is reported.
                    append = out.append
                    for _ in range(n):
                        append(fn(*args, **kwargs))
                elif args or kwargs:
                    out = [fn(*args, **kwargs) for _ in range(n)]
                else:
                    out = [fn() for _ in range(n)]
            except UniquenessException:
                row = done[0] + len(out) + 1
                raise ctx.fail(col.path, f"no new unique value for {table.shown}."
                                         f"{col.name} at row {row:,} of "
                                         f"{table.spec.rows:,}: Faker's {col.provider} has "
                                         "too few distinct values") from None
            except Exception as exc:
                raise ctx.fail(col.path, f"{col.provider} failed: {type(exc).__name__}: "
                                         f"{exc}") from None
            done[0] += n
            return out

    if col.null_ratio <= 0:
        return make
    ratio = col.null_ratio
    nulls = _stream(seed, table.spec.name, col.name, "null").random
    inner = make

    def with_nulls(n: int) -> list[Any]:
        return [None if nulls() < ratio else v for v in inner(n)]

    return with_nulls


def _rows(batchers: Sequence[Callable[[int], list[Any]]], total: int,
          ) -> Iterator[list[tuple[Any, ...]]]:
    for start in range(0, total, BATCH):
        n = min(BATCH, total - start)
        yield list(zip(*(b(n) for b in batchers), strict=True))


_COPY_CONTEXT = re.compile(r"COPY [^,]+, line (\d+)(?:, column ([^:]+))?")


def _fill(conn: Any, table: Table, fake: Any, seed: int, refs: dict[str, list[Any]],
          ctx: Context) -> int:
    import psycopg
    from psycopg import sql

    spec = table.spec
    batchers = [_batcher(c, table, fake, seed, refs, ctx) for c in spec.columns]
    names = [c.name for c in spec.columns]
    stmt = sql.SQL("COPY {}.{} ({}) FROM STDIN").format(
        sql.Identifier(table.schema), sql.Identifier(table.name),
        sql.SQL(", ").join(sql.Identifier(n) for n in names))
    try:
        with conn.cursor() as cur, cur.copy(stmt) as copy:
            write = copy.write_row
            for batch in _rows(batchers, spec.rows):
                for row in batch:
                    write(row)
    except psycopg.Error as exc:
        diag = exc.diag
        path, where = spec.name, ""
        m = _COPY_CONTEXT.search(diag.context or "")
        if m is not None:
            where = f" (row {int(m.group(1)):,})"
            if m.group(2) in names:
                path = f"{spec.name}.columns.{m.group(2)}"
        message = diag.message_primary or str(exc).strip()
        if diag.message_detail:
            message += f" ({diag.message_detail})"
        if isinstance(exc, psycopg.errors.UniqueViolation):
            message += "; if this step ran on this database before, set truncate: true " \
                       "to replace the rows"
        raise ctx.fail(path, f"{diag.severity or 'ERROR'}: {message}{where}") from None
    return spec.rows


# --------------------------------------------------------------------------- the step


def run(opts: dict[str, Any]) -> None:
    import psycopg
    from psycopg import sql

    ctx = Context(opts)
    seed = int(opts.get("seed", 0))
    locale = str(opts.get("locale", "en_US"))
    try:
        specs = parse_tables(opts["tables"])
    except SpecError as exc:
        raise ctx.fail(exc.path, exc.message) from None
    try:
        conn = psycopg.connect(os.environ.get("DATABASE_URL", ""),
                               application_name="devenv-faker")
    except psycopg.OperationalError as exc:
        text = str(exc).strip()
        raise Fail(f"cannot connect to the database: "
                   f"{text.splitlines()[-1] if text else type(exc).__name__}") from None
    with conn:
        catalog = _catalog(conn)
        tables: list[Table] = []
        for spec in specs:
            oid, schema, name = _find_table(catalog, ctx, spec.name, spec.name)
            tables.append(Table(spec, oid, schema, name, _columns(conn, oid)))
        edges: set[tuple[int, int]] = set()
        ref_targets: dict[str, tuple[int, str, str, str]] = {}
        for t in tables:
            for col in t.spec.columns:
                if col.name not in t.columns:
                    raise ctx.fail(col.path, f"table {t.shown} has no column '{col.name}'"
                                             f"{did_you_mean(col.name, t.columns)}")
                if col.mode == "ref":
                    tname, cname = col.ref.rsplit(".", 1)
                    oid, schema, name = _find_table(catalog, ctx, f"{col.path}.ref", tname)
                    cols = _columns(conn, oid)
                    if cname not in cols:
                        raise ctx.fail(f"{col.path}.ref", f"table {schema}.{name} has no "
                                       f"column '{cname}'{did_you_mean(cname, cols)}")
                    ref_targets[col.ref] = (oid, schema, name, cname)
                    edges.add((t.oid, oid))
        oids = [t.oid for t in tables]
        for child, parent in conn.execute(
                "SELECT conrelid, confrelid FROM pg_constraint WHERE contype = 'f' "
                "AND conrelid = ANY(%s) AND confrelid = ANY(%s)", (oids, oids)).fetchall():
            edges.add((int(child), int(parent)))
        order = _order(tables, edges, ctx)
        print(f"{PROG}: seed {seed}, locale {locale}: "
              f"{', '.join(f'{t.shown} ({t.spec.rows:,})' for t in order)}", flush=True)
        if opts.get("truncate"):
            # RESTART IDENTITY: a re-run then yields the same keys (and refs) as the first.
            conn.execute(sql.SQL("TRUNCATE {} RESTART IDENTITY").format(sql.SQL(", ").join(
                sql.SQL("{}.{}").format(sql.Identifier(t.schema), sql.Identifier(t.name))
                for t in order)))
            print(f"{PROG}: truncated {', '.join(t.shown for t in order)}", flush=True)
        fake = faker_for(locale)
        speed_up(fake)
        fake.unique.clear()
        total = 0
        for t in order:
            refs: dict[str, list[Any]] = {}
            for col in t.spec.columns:
                if col.mode != "ref" or col.ref in refs:
                    continue
                _, schema, name, cname = ref_targets[col.ref]
                keys = [r[0] for r in conn.execute(
                    sql.SQL("SELECT DISTINCT {c} FROM {s}.{t} WHERE {c} IS NOT NULL "
                            "ORDER BY {c}").format(c=sql.Identifier(cname),
                                                   s=sql.Identifier(schema),
                                                   t=sql.Identifier(name))).fetchall()]
                if not keys and t.spec.rows:
                    raise ctx.fail(f"{col.path}.ref", f"{schema}.{name} has no rows to pick "
                                   f"{cname} from: fill it first (in a step this one needs, "
                                   "or in this step's tables)")
                refs[col.ref] = keys
            t0 = time.monotonic()
            total += _fill(conn, t, fake, seed, refs, ctx)
            print(f"{PROG}: {t.shown}: {_plural(t.spec.rows, 'row')} in "
                  f"{time.monotonic() - t0:.1f}s", flush=True)
    print(f"{PROG}: committed {_plural(total, 'row')} in {_plural(len(order), 'table')}",
          flush=True)


def main(argv: list[str]) -> int:
    """Entry point: ``python -m devenv.kinds._faker_run JSON``."""
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if len(argv) != 2:
        print(f"{PROG}: usage: python -m devenv.kinds._faker_run JSON (devenv runs this)",
              file=sys.stderr)
        return 2
    try:
        run(json.loads(argv[1]))
    except Fail as exc:
        print(f"{PROG}: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
