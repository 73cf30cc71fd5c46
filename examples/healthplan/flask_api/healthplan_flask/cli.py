"""`flask load-fixtures` and `flask fake-data`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
from flask import Flask

from . import fake_data, fixtures
from .extensions import db

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures"


def register_commands(app: Flask) -> None:
    @app.cli.command("load-fixtures")
    @click.option(
        "--dir",
        "directory",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        default=FIXTURES_DIR,
        show_default=True,
        help="Folder of <table>.yaml / <table>.json files.",
    )
    def load_fixtures_command(directory: Path) -> None:
        """Upsert the reference fixtures (plans, sample members...) by primary key."""
        started = time.monotonic()
        with db.engine.begin() as conn:
            counts = fixtures.load_dir(conn, db.metadata, directory)
        summary = ", ".join(f"{table}={n}" for table, n in counts.items())
        click.echo(f"fixtures loaded in {time.monotonic() - started:.2f}s: {summary}")

    @app.cli.command("fake-data")
    @click.option(
        "--members",
        type=click.IntRange(0, fake_data.MAX_MEMBERS),
        envvar="FAKE_MEMBERS",
        default=fake_data.DEFAULT_MEMBERS,
        show_default=True,
        help="How many fake members (each with enrollments and claims). Env: FAKE_MEMBERS.",
    )
    @click.option(
        "--seed",
        type=int,
        envvar="FAKE_SEED",
        default=fake_data.DEFAULT_SEED,
        show_default=True,
        help="Faker/random seed: the same seed and volume give the same rows. Env: FAKE_SEED.",
    )
    def fake_data_command(members: int, seed: int) -> None:
        """Replace the fake members, enrollments and claims (ids above the fixtures' range)."""
        started = time.monotonic()
        raw = db.engine.raw_connection()
        try:
            pg = raw.driver_connection  # the psycopg 3 connection, for COPY
            counts = fake_data.build(pg, members=members, seed=seed)
            raw.commit()
        finally:
            raw.close()
        click.echo(
            f"fake data in {time.monotonic() - started:.2f}s: {json.dumps(counts, sort_keys=True)}"
        )
