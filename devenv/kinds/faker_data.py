"""``kind: faker``: declarative fake data, deterministic by ``seed:``.

.. code-block:: yaml

    kind: faker
    seed: 42
    locale: en_US
    tables:
      public.members:
        rows: 10000
        columns:
          first_name: first_name                      # a Faker provider
          email: {unique: email}                      # Faker's unique proxy
          birth_date: {date_of_birth: {minimum_age: 65, maximum_age: 100}}
          plan_id: {ref: public.plans.id}             # an existing key of another table
          phone: {phone_number: null, null_ratio: 0.2}
          status: {value: active}                     # a constant (numbers, booleans and
          active: true                                #   null need no {value: ...})

Provider names and their arguments are checked when steps.yaml is loaded; tables and
columns only exist in the live database, so :mod:`devenv.kinds._faker_run` checks them
when the step runs.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from devenv.fields import Field
from devenv.kinds import OptionError, StepContext
from devenv.kinds.base import key_line, payload
from devenv.schema import Command, StepSpec

TABLE_KEYS = ("rows", "columns")
RESERVED = ("unique", "ref", "value", "null_ratio")
# Generator methods that are not data providers (they would reseed or reconfigure).
NOT_PROVIDERS = frozenset({"seed", "seed_instance", "seed_locale", "add_provider",
                           "get_providers", "provider", "set_formatter", "get_formatter",
                           "set_arguments", "get_arguments", "del_arguments", "format",
                           "parse", "random", "unique", "optional"})
_TABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*){1,2}$")


def _option_error(exc: SpecError) -> OptionError:
    """A ``tables:`` mistake for the loader, with the key path below ``tables``."""
    return OptionError("tables", exc.message, "" if exc.path == "tables" else exc.path)


class SpecError(Exception):
    """A mistake in ``tables:``; ``path`` is the key path below it."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True)
class ColumnSpec:
    """How one column's values are made."""

    name: str
    path: str  # below tables:, e.g. "public.members.columns.email"
    mode: str  # "provider" | "unique" | "ref" | "value"
    provider: str = ""
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    ref: str = ""
    value: Any = None
    null_ratio: float = 0.0


@dataclass(frozen=True)
class TableSpec:
    name: str
    rows: int
    columns: tuple[ColumnSpec, ...]


def _hint(word: str, choices: list[str] | tuple[str, ...]) -> str:
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def _provider_call(key: str, raw: Any) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    if raw is None:
        return key, (), {}
    if isinstance(raw, Mapping):
        return key, (), {str(k): v for k, v in raw.items()}
    if isinstance(raw, list):
        return key, tuple(raw), {}
    return key, (raw,), {}


def parse_column(table: str, name: str, raw: Any) -> ColumnSpec:
    """One entry of ``columns:``."""
    path = f"{table}.columns.{name}"
    if isinstance(raw, str):
        return ColumnSpec(name, path, "provider", provider=raw)
    if raw is None or isinstance(raw, bool | int | float):
        return ColumnSpec(name, path, "value", value=raw)
    if not isinstance(raw, Mapping):
        raise SpecError(path, "expected a Faker provider name, a constant, or a mapping "
                              "({provider: arguments}, {unique: provider}, {ref: "
                              "table.column}, {value: constant})")
    spec = dict(raw)
    null_ratio = 0.0
    if "null_ratio" in spec:
        ratio = spec.pop("null_ratio")
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio <= 1:
            raise SpecError(f"{path}.null_ratio", f"expected a number from 0 to 1, got "
                                                  f"{ratio!r}")
        null_ratio = float(ratio)
    if len(spec) != 1:
        what = ", ".join(spec) if spec else "nothing"
        raise SpecError(path, f"expected exactly one of a provider, unique, ref or value "
                              f"(besides null_ratio), got {what}")
    key, arg = next(iter(spec.items()))
    if key == "value":
        return ColumnSpec(name, path, "value", value=arg, null_ratio=null_ratio)
    if key == "ref":
        if not isinstance(arg, str) or not _REF.match(arg):
            raise SpecError(f"{path}.ref", f"expected [schema.]table.column, got {arg!r}")
        return ColumnSpec(name, path, "ref", ref=arg, null_ratio=null_ratio)
    if key == "unique":
        args: tuple[Any, ...] = ()
        kwargs: dict[str, Any] = {}
        if isinstance(arg, str):
            provider = arg
        elif isinstance(arg, Mapping) and len(arg) == 1:
            pkey, praw = next(iter(arg.items()))
            provider, args, kwargs = _provider_call(str(pkey), praw)
        else:
            raise SpecError(f"{path}.unique", "expected a provider name or {provider: "
                                              "arguments}")
        return ColumnSpec(name, path, "unique", provider=provider, args=args, kwargs=kwargs,
                          null_ratio=null_ratio)
    provider, args, kwargs = _provider_call(key, arg)
    return ColumnSpec(name, path, "provider", provider=provider, args=args, kwargs=kwargs,
                      null_ratio=null_ratio)


def parse_tables(tables: Mapping[str, Any]) -> list[TableSpec]:
    """``tables:`` as :class:`TableSpec` values; raises :class:`SpecError`."""
    if not tables:
        raise SpecError("tables", "expected at least one table")
    out = []
    for tname, traw in tables.items():
        if not _TABLE.match(tname):
            raise SpecError(tname, "expected a table name, optionally with its schema "
                                   "(public.members)")
        if not isinstance(traw, Mapping):
            raise SpecError(tname, "expected a mapping with rows: and columns:")
        for key in traw:
            if key not in TABLE_KEYS:
                raise SpecError(f"{tname}.{key}", f"unknown key '{key}'"
                                f"{_hint(key, TABLE_KEYS) or '; allowed: rows, columns'}")
        rows = traw.get("rows")
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise SpecError(f"{tname}.rows", f"expected a whole number of rows, got "
                                             f"{rows!r}")
        craw = traw.get("columns")
        if not isinstance(craw, Mapping) or not craw:
            raise SpecError(f"{tname}.columns", "expected a mapping of column: how to fill "
                                                "it")
        columns = tuple(parse_column(tname, str(c), v) for c, v in craw.items())
        out.append(TableSpec(tname, rows, columns))
    return out


@cache
def faker_for(locale: str) -> Any:
    """A Faker for ``locale`` (made once: building one loads every provider)."""
    from faker import Faker

    return Faker(locale)


def provider_names(fake: Any) -> list[str]:
    gen = fake._factories[0]
    return sorted(n for n in dir(gen) if not n.startswith("_") and n not in NOT_PROVIDERS
                  and callable(getattr(gen, n, None)))


def _call_text(col: ColumnSpec) -> str:
    parts = [repr(a) for a in col.args] + [f"{k}={v!r}" for k, v in col.kwargs.items()]
    return f"{col.provider}({', '.join(parts)})"


def check_providers(tables: list[TableSpec], locale: str) -> None:
    """Every provider exists for ``locale`` and accepts its arguments (one trial call)."""
    fake = faker_for(locale)
    gen = fake._factories[0]
    names: list[str] | None = None
    for table in tables:
        for col in table.columns:
            if col.mode not in ("provider", "unique"):
                continue
            fn = getattr(gen, col.provider, None) if not col.provider.startswith("_") else None
            if fn is None or col.provider in NOT_PROVIDERS or not callable(fn):
                names = names or provider_names(fake)
                raise SpecError(col.path, f"unknown Faker provider '{col.provider}'"
                                f"{_hint(col.provider, names)}; for a constant text write "
                                f"{{value: {col.provider}}}")
            try:
                fn(*col.args, **col.kwargs)
            except Exception as exc:
                raise SpecError(col.path, f"{_call_text(col)} fails: {type(exc).__name__}: "
                                          f"{exc}") from None


class FakerKind:
    name = "faker"
    options: tuple[Field, ...] = (
        Field("seed", int, 0, "The same seed makes the same rows."),
        Field("locale", str, "en_US", "The Faker locale."),
        Field("tables", dict, {}, "table (schema.table) -> rows: and columns:", required=True,
              schema={"type": "object", "additionalProperties": {
                  "type": "object", "required": list(TABLE_KEYS),
                  "properties": {"rows": {"type": "integer", "minimum": 0},
                                 "columns": {"type": "object"}},
                  "additionalProperties": False}}),
        Field("truncate", bool, False, "Empty the tables first."),
    )
    uses_run = False
    uses_python = False
    warm_start = False
    incremental = False

    def validate(self, options: Mapping[str, Any]) -> None:
        """The table specs' shape, the locale, and each provider with its arguments."""
        try:
            tables = parse_tables(options["tables"])
        except SpecError as exc:
            raise _option_error(exc) from None
        locale = str(options.get("locale", "en_US"))
        from faker.config import AVAILABLE_LOCALES

        if locale not in AVAILABLE_LOCALES:
            raise OptionError("locale", f"unknown Faker locale '{locale}'"
                                        f"{_hint(locale, sorted(AVAILABLE_LOCALES))}")
        try:
            check_providers(tables, locale)
        except SpecError as exc:
            raise _option_error(exc) from None

    def default_inputs(self, step: StepSpec) -> tuple[str, ...]:
        """None: the whole configuration is in steps.yaml (part of the fingerprint)."""
        return ()

    def command(self, step: StepSpec, ctx: StepContext) -> Command:
        opts = step.options
        values: dict[str, Any] = {
            "seed": int(opts.get("seed", 0)),
            "locale": str(opts.get("locale", "en_US")),
            "tables": opts["tables"],
            "truncate": bool(opts.get("truncate", False)),
            "tables_at": key_line(step, "tables"),
            # the line of each key below tables:, so run-time errors point at theirs
            "lines": {k.removeprefix("tables."): v for k, v in step.key_lines.items()
                      if k.startswith("tables.")},
        }
        return (sys.executable, "-m", "devenv.kinds._faker_run", payload(step, values))


KIND = FakerKind()
