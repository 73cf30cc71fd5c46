"""Random and mutated configurations: the loader raises ConfigError (with a line) or loads.

Bounded and derandomized under CI so a run is reproducible; locally it explores freely.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devenv import loader
from devenv.errors import ConfigError
from tests.test_loader import VALID

CI = bool(os.environ.get("CI"))
FUZZ = settings(max_examples=1500 if CI else 400, deadline=None, derandomize=CI,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
ROOT = Path("/nonexistent-devenv-root")


def check(text: str) -> None:
    try:
        loader.load_text(text, ROOT)
    except ConfigError as exc:
        assert exc.file, f"no file in: {exc}"
        assert exc.line is not None and exc.line >= 1, f"no line in: {exc}"


@FUZZ
@given(st.text(max_size=400))
def test_random_text(text: str) -> None:
    check(text)


@FUZZ
@given(st.data())
def test_mutated_valid_config(data: st.DataObject) -> None:
    text = VALID
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["delete", "insert", "replace", "dup-line", "drop-line",
                                        "truncate"]))
        i = data.draw(st.integers(0, max(0, len(text) - 1)))
        if op == "delete":
            text = text[:i] + text[i + data.draw(st.integers(1, 8)):]
        elif op == "insert":
            text = text[:i] + data.draw(st.sampled_from(
                [":", "-", "[", "]", "{", "}", " ", "\n", "&a", "*a", "!!", "'", '"', "#",
                 "needs: [x]", "\t", "run: ", "~", "%", "@"])) + text[i:]
        elif op == "replace":
            text = text[:i] + data.draw(st.characters()) + text[i + 1:]
        else:
            lines = text.splitlines(keepends=True)
            if not lines:
                continue
            j = data.draw(st.integers(0, len(lines) - 1))
            if op == "dup-line":
                lines.insert(j, lines[j])
            elif op == "drop-line":
                del lines[j]
            else:
                lines = lines[:j]
            text = "".join(lines)
    check(text)


KEYS = [*loader.TOP_KEYS, *loader.STEP_KEYS, *loader.SERVICE_KEYS, *loader.DATABASE_KEYS,
        *loader.PROCESS_KEYS, "a", "b", "db", "kind", "fixtures", "x y", "1"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.floats(allow_nan=True),
                    st.sampled_from(["a", "b", "db", "true", "postgres:15", "5432", "local", "ci",
                                     "shell", "sql", "faker", "${X}", "$${Y}", ""]),
                    st.text(max_size=12))
trees: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.sampled_from(KEYS), children, max_size=5)),
    max_leaves=30,
)


@FUZZ
@given(st.dictionaries(st.sampled_from(list(loader.TOP_KEYS)), trees, max_size=7))
def test_random_structures(doc: dict[str, Any]) -> None:
    check(yaml.safe_dump(doc, allow_unicode=True))


@FUZZ
@given(st.dictionaries(st.sampled_from(["a", "b", "c", "db"]),
                       st.dictionaries(st.sampled_from([*loader.STEP_KEYS, "kind"]), trees,
                                       max_size=5), max_size=4))
def test_random_steps(steps: dict[str, Any]) -> None:
    doc = {"version": 1, "services": {"db": {"image": "postgres:15"}}, "steps": steps}
    check(yaml.safe_dump(doc, allow_unicode=True))
