"""Step fingerprints: a step's definition, the content of its inputs, its upstream.

A fingerprint keeps its parts (a hash per definition key, per input file, per upstream
step) so that when it changes devenv can say *which* input changed, not just that
something did.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devenv import graph
from devenv.errors import ConfigError
from devenv.schema import Project

# Generated files that change without the source changing (Python writes .pyc on import).
IGNORED_DIRS = frozenset({"__pycache__", ".git", ".devenv", ".mypy_cache", ".pytest_cache",
                          ".ruff_cache", "node_modules", ".hypothesis"})
IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", "~")


def _hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canon(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


@dataclass(frozen=True)
class Fingerprint:
    """A step's fingerprint and the parts it was made of."""

    value: str
    definition: Mapping[str, str] = field(default_factory=dict)
    inputs: Mapping[str, str] = field(default_factory=dict)
    upstream: Mapping[str, str] = field(default_factory=dict)

    @property
    def short(self) -> str:
        return self.value[:12]


def _ignored(rel: str) -> bool:
    parts = rel.split("/")
    return any(p in IGNORED_DIRS for p in parts) or rel.endswith(IGNORED_SUFFIXES)


def expand_inputs(root: Path, patterns: Iterable[str]) -> list[str]:
    """The files matched by ``patterns`` (globs relative to ``root``; a folder means every
    file below it), as sorted POSIX paths relative to ``root`` where possible."""
    found: set[str] = set()
    for pattern in patterns:
        base = Path(pattern)
        whole = base if base.is_absolute() else root / base
        if not glob.has_magic(pattern) and whole.is_dir():
            # ".", "/", "src/": pathlib's glob cannot take these as patterns
            matches: Iterable[Path] = [whole]
        elif base.is_absolute():
            anchor = Path(base.anchor)
            matches = anchor.glob(str(base.relative_to(anchor)))
        else:
            matches = root.glob(pattern)
        for match in matches:
            paths = [match]
            if match.is_dir():
                paths = [Path(d) / f for d, _, files in os.walk(match) for f in files]
            for p in paths:
                if not p.is_file():
                    continue
                try:
                    rel = p.relative_to(root).as_posix()
                except ValueError:
                    rel = p.as_posix()
                if not _ignored(rel):
                    found.add(rel)
    return sorted(found)


class FileHasher:
    """Hashes files, remembering results by (path, size, mtime) within one process."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int, int], str] = {}

    def digest(self, path: Path) -> str:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        value = h.hexdigest()
        self._cache[key] = value
        return value


_HASHER = FileHasher()


def compute(project: Project, names: Iterable[str] | None = None) -> dict[str, Fingerprint]:
    """Fingerprints of ``names`` (default: every step) and of everything they need."""
    wanted = graph.closure(project, project.steps if names is None else names)
    out: dict[str, Fingerprint] = {}
    project_env = dict(sorted(project.env.items()))
    env_hash = _hash(_canon(project_env))
    for name in graph.topo_order(project, wanted):
        step = project.steps[name]
        definition = {k: _hash(_canon(v)) for k, v in step.definition().items()}
        definition["project env"] = env_hash
        try:
            inputs = {rel: _HASHER.digest(project.root / rel)
                      for rel in expand_inputs(project.root, step.inputs)}
        except OSError as exc:
            raise ConfigError(
                f"cannot read an input: {exc.strerror or exc}"
                f"{f' ({exc.filename})' if exc.filename else ''}; list files the step "
                "reads, or fix their permissions", step.loc.file,
                step.key_lines.get("inputs", step.loc.line), f"steps.{name}.inputs") from None
        upstream = {n: out[n].value for n in sorted(graph.step_needs(project, name))}
        value = _hash(_canon({"d": definition, "i": inputs, "u": upstream}))
        out[name] = Fingerprint(value, definition, inputs, upstream)
    return out


def combined(fingerprints: Mapping[str, Fingerprint], names: Iterable[str]) -> str:
    """One key for a set of steps (what a snapshot or a CI cache holds)."""
    return _hash(_canon(sorted((n, fingerprints[n].value) for n in names)))


def explain_change(old: Mapping[str, Any], new: Fingerprint, limit: int = 3) -> str:
    """Why a step whose recorded fingerprint parts are ``old`` must run again."""
    reasons: list[str] = []
    old_def: Mapping[str, str] = old.get("definition", {})
    changed_keys = sorted(k for k in set(old_def) | set(new.definition)
                          if old_def.get(k) != new.definition.get(k))
    if changed_keys:
        reasons.append(f"definition changed ({', '.join(changed_keys)})")
    old_inputs: Mapping[str, str] = old.get("inputs", {})
    changed = [p for p in new.inputs if p in old_inputs and old_inputs[p] != new.inputs[p]]
    added = [p for p in new.inputs if p not in old_inputs]
    removed = [p for p in old_inputs if p not in new.inputs]
    for verb, paths in (("changed", changed), ("added", added), ("removed", removed)):
        if paths:
            shown = ", ".join(paths[:limit])
            more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
            # the noun takes the plural: "inputs removed", never "input removeds"
            plural = "s" if len(paths) > 1 else ""
            reasons.append(f"input{plural} {verb}: {shown}{more}")
    old_up: Mapping[str, str] = old.get("upstream", {})
    ups = [n for n in new.upstream if old_up.get(n) != new.upstream[n]]
    if ups:
        reasons.append("upstream changed: " + ", ".join(ups))
    return "; ".join(reasons) or "fingerprint changed"


def graph_key(project: Project, profile: str) -> str:
    """The key of the whole step graph of ``profile``: what a CI cache is keyed on. Any
    change to a step's definition or inputs, in that profile, changes it."""
    fps = compute(project)
    steps = [n for n in graph.topo_order(project) if project.steps[n].in_profile(profile)]
    return _hash(_canon({"project": project.name, "profile": profile,
                         "steps": combined(fps, steps), "schemas":
                         list(project.database.schemas) if project.database else []}))
