"""How a step may run again on its own database (devenv.workingdb.rerun): decided from devenv's
records of the database and the checked-out code, no database needed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from devenv import fingerprint, loader, planner
from devenv.workingdb import rerun


def _record(fp: fingerprint.Fingerprint, **change: Any) -> dict[str, Any]:
    rec = {"fingerprint": fp.value, "definition": dict(fp.definition),
           "inputs": dict(fp.inputs), "upstream": dict(fp.upstream)}
    return {**rec, **change}


def _verdict(root: Path, records: Callable[[dict[str, fingerprint.Fingerprint]],
                                           dict[str, Any]]) -> rerun.Verdict:
    project = loader.load(root / "steps.yaml")
    fps = fingerprint.compute(project)
    recorded = records(fps)
    decisions = planner.decide(project, recorded, fingerprints=fps)
    return rerun.classify(project, recorded, decisions, fps)


def _project(make_project: Callable[..., Path]) -> Path:
    return make_project({
        "version": 1, "name": "rr", "services": {"db": {"image": "postgres:15"}},
        "database": {"service": "db", "name": "rr_dev"},
        "steps": {
            "migrate": {"kind": "django-migrate", "settings": "site.settings", "cwd": "app",
                        "needs": ["db"]},
            "seed": {"run": "psql -f seed.sql", "inputs": ["seed.sql"], "needs": ["migrate"]},
        },
    }, files={"app/notes/migrations/__init__.py": "",
              "app/notes/migrations/0001_initial.py": "# v1\n", "seed.sql": "select 1;\n"})


def test_an_applied_migration_edited_since_is_rebuilt_not_carried(
        make_project: Callable[..., Path]) -> None:
    """Django skips an applied migration by name: the edit would never reach the database,
    and the data steps below would be carried on a schema no fresh build makes."""
    root = _project(make_project)
    path = "app/notes/migrations/0001_initial.py"

    def before_the_edit(fps: dict[str, fingerprint.Fingerprint]) -> dict[str, Any]:
        return {"migrate": _record(fps["migrate"], fingerprint="old",
                                   inputs={**fps["migrate"].inputs, path: "old-hash"}),
                "seed": _record(fps["seed"], fingerprint="old",
                                upstream={"migrate": "old"})}

    verdict = _verdict(root, before_the_edit)
    assert verdict.rebuild["migrate"] == (f"this database applied {path} before it was "
                                          "edited; migrate would not apply it again")
    assert "seed" in verdict.rebuild and not verdict.carried


def test_a_data_step_whose_last_run_failed_is_not_run_on_top(
        make_project: Callable[..., Path]) -> None:
    root = _project(make_project)
    verdict = _verdict(root, lambda fps: {"migrate": _record(fps["migrate"]),
                                          "seed": {"failed": True}})
    assert verdict.rebuild == {"seed": "its last run here failed part-way; running it again "
                                       "here could add its rows a second time"}


def test_a_new_migration_carries_the_data_below(make_project: Callable[..., Path]) -> None:
    root = _project(make_project)
    (root / "app/notes/migrations/0002_more.py").write_text("# v1\n")

    def before(fps: dict[str, fingerprint.Fingerprint]) -> dict[str, Any]:
        inputs = {p: h for p, h in fps["migrate"].inputs.items() if "0002" not in p}
        return {"migrate": _record(fps["migrate"], fingerprint="old", inputs=inputs),
                "seed": _record(fps["seed"], fingerprint="old", upstream={"migrate": "old"})}

    verdict = _verdict(root, before)
    assert verdict.rebuild == {} and list(verdict.carried) == ["seed"]
