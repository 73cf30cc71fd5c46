"""fingerprint.explain_change: the reasons plan and status print."""

from __future__ import annotations

from devenv.fingerprint import Fingerprint, explain_change


def test_plural_is_on_the_noun() -> None:
    old = {"inputs": {"a.sql": "1", "b.sql": "1", "c.sql": "1", "d.sql": "1"}}
    new = Fingerprint("x", inputs={"a.sql": "2", "b.sql": "2", "e.sql": "1", "f.sql": "1"})
    assert explain_change(old, new) == ("inputs changed: a.sql, b.sql; "
                                        "inputs added: e.sql, f.sql; "
                                        "inputs removed: c.sql, d.sql")


def test_one_input_is_singular() -> None:
    old = {"inputs": {"a.sql": "1", "gone.sql": "1"}}
    new = Fingerprint("x", inputs={"a.sql": "1", "new.sql": "1"})
    assert explain_change(old, new) == "input added: new.sql; input removed: gone.sql"


def test_more_than_the_limit_is_counted() -> None:
    old: dict[str, dict[str, str]] = {"inputs": {}}
    new = Fingerprint("x", inputs={f"{i}.sql": "1" for i in range(5)})
    assert explain_change(old, new) == "inputs added: 0.sql, 1.sql, 2.sql and 2 more"
