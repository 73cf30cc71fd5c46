"""Configuration and environment checks: broken files, cycles, missing paths and programs,
undefined ${NAME}, secrets set twice. No database needed."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devenv.doctor import FAIL, Check, CheckDef, Context, run_checks
from tests.doctor.conftest import checks, run_doctor

MakeProject = Callable[..., Path]


def cfg(steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"version": 1, "name": "doc-config", "steps": steps, **extra}


def test_yaml_that_does_not_load(make_project: MakeProject) -> None:
    root = make_project("version: 1\nsteps:\n  a:\n    run: echo\n    nedds: [b]\n")
    code, out = run_doctor(root, as_json=True)
    assert code == 1
    result = json.loads(out)
    assert [c["id"] for c in result] == ["config.load", "config.graph"]
    load = result[0]
    assert load["status"] == "fail"
    assert load["finding"] == ("steps.yaml:5: steps.a.nedds: unknown key 'nedds' (did you mean "
                               "'needs'?)")
    assert load["fix"] == "edit steps.yaml:5 (steps.a.nedds) as the message says"
    assert result[1]["status"] == "warn"


def test_dependency_cycle(make_project: MakeProject) -> None:
    root = make_project(cfg({"a": {"run": "true", "needs": ["b"]},
                             "b": {"run": "true", "needs": ["a"]}}))
    found = {c.id: c for c in run_checks(Context(root / "steps.yaml"))}
    assert found["config.graph"].status == "fail"
    assert found["config.graph"].finding.endswith("dependency cycle: a -> b -> a")
    assert found["config.graph"].fix.startswith("remove one of the needs in the cycle (steps.yaml:")


def test_missing_paths(make_project: MakeProject) -> None:
    root = make_project(cfg({
        "in-gone-folder": {"run": "true", "cwd": "no/such/dir"},
        "bad-python": {"kind": "python", "call": "seed:run", "python": "${VENV}"},
        "bad-glob": {"run": "true", "inputs": ["fixtures/*.yml"]},
        "migrate": {"kind": "alembic", "config": "db/alembic.ini"},
        "django": {"kind": "django-migrate", "cwd": "web"},
    }, env={"VENV": ".venv-missing"}), files={"web/README": "no manage.py here\n"})
    found = checks(root)["config.paths"]
    assert found.status == "fail"
    details = "\n".join(found.details)
    assert "steps.in-gone-folder.cwd: no/such/dir does not exist (steps.yaml:6)" in details
    assert "steps.bad-python.python: " in details and ".venv-missing" in details
    assert "steps.migrate.config: db/alembic.ini not found in . (steps.yaml:" in details
    assert "steps.django.manage: manage.py not found in web (steps.yaml:" in details
    assert "steps.bad-glob.inputs[0]: 'fixtures/*.yml' matches no file (steps.yaml:" in details
    assert found.finding.startswith("steps.in-gone-folder.cwd: no/such/dir does not exist")
    assert found.fix.startswith("fix cwd: at steps.yaml:6, or create no/such/dir; create the "
                                "virtualenv, or fix python: at steps.yaml:")


def test_missing_python_fails_config_load(make_project: MakeProject) -> None:
    root = make_project(cfg({"seed": {"kind": "python", "call": "seed:run", "cwd": "api",
                                      "python": ".venv"}}), files={"api/seed.py": ""})
    found = checks(root)["config.load"]
    assert found.status == "fail"
    assert found.finding.startswith("steps.yaml:8: steps.seed.python: .venv is not an "
                                    "interpreter or a virtualenv in api/ (the step's cwd)")


def test_command_not_found(make_project: MakeProject) -> None:
    root = make_project(cfg({
        "ok": {"run": "cd . && FOO=1 true | cat"},
        "typo": {"run": "psqll -f schema.sql"},
        "local": {"run": ["./scripts/load.sh"]},
    }))
    found = checks(root)["config.commands"]
    assert found.status == "fail"
    assert found.finding == ("steps.typo.run: 'psqll' is not found on the PATH (steps.yaml:7); "
                             "steps.local.run: './scripts/load.sh' is not found in . "
                             "(steps.yaml:9)")
    assert found.fix.startswith("install psqll where the step runs (PATH, or the app's "
                                "virtualenv), or fix the command at steps.yaml:7")


def test_every_program_found(make_project: MakeProject) -> None:
    root = make_project(cfg({"a": {"run": "cd . && true && python -c 'print(1)' | cat"}}))
    found = checks(root)
    assert found["config.commands"].status == "ok"
    assert found["config.commands"].finding == ("all 2 programs the steps and processes run "
                                                "are found")
    assert found["config.paths"].status == "ok"


def test_variable_nobody_defines(make_project: MakeProject, monkeypatch: Any) -> None:
    monkeypatch.delenv("API_TOKEN", raising=False)
    root = make_project(cfg(
        {"seed": {"run": "echo ${API_TOKEN}", "env": {"TOKEN": "${API_TOKEN}"}}},
        processes={"web": {"run": "true --token ${API_TOKEN:-none}"}}))
    found = checks(root)["env.undefined"]
    assert found.status == "fail"
    assert found.finding == ("${API_TOKEN} is used by steps.seed.env.TOKEN (steps.yaml:7), "
                             "steps.seed.run (steps.yaml:5) but defined nowhere (not in env: of "
                             "steps.yaml, not in your shell)")
    assert found.fix == ("add API_TOKEN: <value> under env: in steps.yaml (or export API_TOKEN "
                         "in your shell)")
    # Defined in the shell: fine.
    monkeypatch.setenv("API_TOKEN", "t")
    assert checks(root)["env.undefined"].status == "ok"


def test_secret_set_twice_with_different_values(make_project: MakeProject) -> None:
    root = make_project(cfg(
        {"a": {"run": "true"}},
        env={"JWT_SECRET": "one"},
        processes={"flask": {"run": "true", "env": {"JWT_SECRET": "one"}},
                   "django": {"run": "true", "env": {"JWT_SECRET": "two"}}}))
    found = checks(root)["env.shared"]
    assert found.status == "fail"
    assert found.finding.startswith("JWT_SECRET has different values in env (steps.yaml:")
    assert "processes.django.env (steps.yaml:" in found.finding
    assert found.fix == ("define JWT_SECRET once under the top-level env: of steps.yaml and "
                         "drop the others")
    assert "two" not in found.finding.replace("steps.yaml", "")


def test_a_check_that_hangs_is_reported_not_waited_for(make_project: MakeProject) -> None:
    root = make_project(cfg({"a": {"run": "true"}}))

    def hangs(ctx: Context) -> Check:
        time.sleep(30)  # a check stuck on something that never answers
        raise AssertionError("unreachable")

    t0 = time.monotonic()
    [result] = run_checks(Context(root / "steps.yaml"),
                          [CheckDef("slow.one", "Test", hangs, timeout=0.5)])
    assert time.monotonic() - t0 < 2
    assert result.status == FAIL
    assert result.finding.startswith("no answer within 0.5s")


def test_a_check_that_crashes_does_not_hide_the_others(make_project: MakeProject) -> None:
    root = make_project(cfg({"a": {"run": "true"}}))

    def broken(ctx: Context) -> Check:
        return {}["missing"]  # type: ignore[no-any-return]

    results = run_checks(Context(root / "steps.yaml"),
                         [CheckDef("broken.one", "Test", broken),
                          *[d for d in __import__("devenv.doctor").doctor.REGISTRY
                            if d.id == "config.load"]])
    assert results[0].status == FAIL
    assert results[0].finding.startswith("the check itself failed: KeyError: 'missing'")
    assert results[1].status == "ok"


def test_a_program_named_by_a_variable_is_still_looked_for(make_project: MakeProject) -> None:
    # run: passes ${TOOL} to the shell as a reference; doctor reads the value to find it
    root = make_project(cfg({"a": {"run": "${TOOL} --version", "env": {"TOOL": "psqll"}}}))
    found = checks(root)["config.commands"]
    assert found.status == "fail"
    assert found.finding.startswith("steps.a.run: 'psqll' is not found on the PATH")
