"""Fingerprints: the reasons plan and status print, and fingerprints that must not change."""

from __future__ import annotations

from pathlib import Path

import pytest

from devenv import loader
from devenv.fingerprint import Fingerprint, compute, explain_change


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


# Fingerprints computed with devenv before the steps.yaml keys were declared in one field
# table (devenv.fields): an unchanged steps.yaml must keep them, or every step of every
# project rebuilds after an upgrade. tests/pinned/example is this repository's steps.yaml
# as it was (its inputs match nothing there, so only definitions and upstream count);
# tests/pinned/every_key uses every step key and every kind's options, with input files.
PINNED = Path(__file__).resolve().parent / "pinned"
PINNED_EXAMPLE = {
    "flask-migrate": "7957ea23bae2a4052089019d385aac1a9861836d7fd5e91644a58d3d4a3bdda5",
    "billing": "b9594197b7dfa98f5a9ba408798f53ca1ef162e1dda8362f324fa5443dcb825f",
    "flask-fixtures": "31427ee9bb42940a72f4ebc1a6d9a6a795e126d877385952a847748fc682966a",
    "django-migrate": "900fb03b585db48d9543def4ffcfaaf28367ffbad759c39df3456f37dddd78a2",
    "flask-fake-data": "081e8793c9755a65394564e3fc477646291a6273c627c34280c82cad5c55bc99",
    "django-fixtures": "126ce8e5bd1a291064438a182f65d11e32c38cbffca99bfa6a7ce5674f080c59",
    "django-seed-extra": "0ba05a15e6c4cf646060d1a9cc911cd9326152bc3187632f91051eca8f89f304",
    "local-user": "f5bdda1394c792f0bdd453eea260916f5156f9f14351a64764116fe3c72a63ec",
}
PINNED_EVERY_KEY = {
    "argv": "400120a59992dbd3d85278ee3e175c25a3a45a23d027b1148696df73a44c37dd",
    "migrate": "8a2532ed7fe10a0d182c78488574333a2e77ed3513fcd32664d3bc93886ad16f",
    "cmd": "f5b8937adc845cdd930da7e82444a003ee4256c7a852ec65c935da7f683a28a9",
    "alembic": "85d0c181189dd1b408f410cdf101ce573925eb1a7a8f25c47ea281303b63dcb2",
    "alembic-flask": "cbed362dec930b11b7dc09fba007094fc8bd38355228abe9e4742f35cc91c721",
    "flask": "8ff121f87b8151e385379f933ee511f49423cd7fcc5031ef3586432bb15ff112",
    "sql": "36e18e6baba972ff0b52d4419b2434b87c023c5cbe14ff82716384e9f3dedfaa",
    "sql-one": "3c14b2599f3aeaa7aa623ee985f5d2c305f3615479d6980ef1a2b28d5187ce98",
    "fake": "20dfc39bd07e01bb38f0017019dc06755d64742fbcdbd81c84acd46737f5f07a",
    "call": "1078f557895509dd5834580d9b8d0f3322c9181392b062cf80682d14ecdf8764",
    "shell-str": "e3bee37e7f79f8bb9dbb9d9872435d3fbf5c8481f89c36e147a75b4227de0f29",
    "load": "bcc243cda776a861e3168571fb6523cc05feefd8ca71103933fc02bcc7a75454",
}


@pytest.mark.parametrize(("folder", "pinned"), [("example", PINNED_EXAMPLE),
                                                 ("every_key", PINNED_EVERY_KEY)])
def test_an_unchanged_steps_yaml_keeps_its_fingerprints(folder: str,
                                                        pinned: dict[str, str]) -> None:
    project = loader.load(PINNED / folder / "steps.yaml")
    assert {name: fp.value for name, fp in compute(project).items()} == pinned
