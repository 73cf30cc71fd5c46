"""Branch switch on the example: `git switch B && devenv up`, against the manual way.

    python bench/branch_switch.py [--repeat 5] [--members 2000]

A copy of the example in a throw-away git repository, with a branch `feature` that adds a
Django migration (crm: a new table) and an Alembic revision (flask: a new column). Both
branches were visited before (each has its database), then, side by side in one run:

  * devenv: `git switch OTHER && devenv up --no-processes` (the checked-out branch's parked
    database is swapped in by a rename; nothing runs);
  * manual: what a developer types without devenv. Leaving feature: `manage.py migrate crm
    0001` and `flask db downgrade <common>`, `git switch main`, then `manage.py migrate` and
    `flask db upgrade`; entering feature: `git switch feature`, `manage.py migrate`, `flask
    db upgrade`. (Their hand-made rows on the other branch's tables are lost; devenv's are
    parked.)

Whole commands, process start-up included, against one PostgreSQL started from local
binaries. Medians over --repeat round trips; the ratio is manual / devenv per switch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devenv.postgres import pgcluster  # noqa: E402

DB = "healthplan_dev"
CRM_0002 = '''from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("crm", "0001_initial")]
    operations = [
        migrations.CreateModel(
            name="Followup",
            fields=[("id", models.BigAutoField(primary_key=True, serialize=False)),
                    ("note", models.TextField(default=""))],
        ),
    ]
'''
FLASK_0008 = '''import sqlalchemy as sa
from alembic import op

revision = "0008_member_nickname"
down_revision = "0007_claim_summaries"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("members", sa.Column("nickname", sa.String(40)))


def downgrade():
    op.drop_column("members", "nickname")
'''


def sh(argv: list[str], env: dict[str, str], cwd: Path) -> str:
    r = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stdout[-3000:]}")
    return r.stdout


def timed(cmds: list[tuple[list[str], Path]], env: dict[str, str],
          expect: str | None = None) -> float:
    """Seconds for ``cmds`` one after the other; ``expect``: text the last one must print
    (the switch really happened), checked after the clock stopped."""
    t0 = time.perf_counter()
    out = ""
    for argv, cwd in cmds:
        out = sh(argv, env, cwd)
    took = time.perf_counter() - t0
    if expect is not None and expect not in out:
        sys.exit(f"expected {expect!r} in the output of {' '.join(cmds[-1][0])}:\n{out}")
    return took


def git(*args: str) -> list[str]:
    return ["git", "-c", "user.email=b@example.com", "-c", "user.name=bench", *args]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--members", type=int, default=2000, help="FAKE_MEMBERS")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="devenv-bench-branch-"))
    os.chmod(base, 0o755)
    proj = base / "project"
    ignore = shutil.ignore_patterns("__pycache__", ".devenv")
    for part in ("examples", "services"):
        shutil.copytree(ROOT / part, proj / part, ignore=ignore)
    # a name of its own: the example's services (the payments stand-in) must not take the
    # containers of the example a developer runs from this checkout
    (proj / "steps.yaml").write_text((ROOT / "steps.yaml").read_text().replace(
        "name: healthplan\n", "name: hpbench-switch\n", 1))
    (proj / ".gitignore").write_text(".devenv/\n__pycache__/\n")
    cluster = pgcluster.Cluster(base / "data", pgcluster.free_port())
    cluster.start("-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
    try:
        url = cluster.url(DB)
        env = {**os.environ, "DATABASE_URL": url, "FAKE_MEMBERS": str(args.members),
               "PGPASSWORD": cluster.password, "FLASK_APP": "app.py",
               "JWT_SECRET": "dev-only-secret-for-the-healthplan-example-0123456789"}
        env.pop("PGOPTIONS", None)
        devenv = [str(Path(sys.executable).parent / "devenv"), "--plain"]
        flask = str(Path(sys.executable).parent / "flask")
        django = proj / "examples/healthplan/django_api"
        flask_dir = proj / "examples/healthplan/flask_api"
        sh(git("init", "-q", "-b", "main"), env, proj)
        sh(git("add", "-A"), env, proj)
        sh(git("commit", "-qm", "main"), env, proj)
        sh(git("switch", "-qc", "feature"), env, proj)
        (django / "crm/migrations/0002_followup.py").write_text(CRM_0002)
        (flask_dir / "migrations/versions/0008_member_nickname.py").write_text(FLASK_0008)
        sh(git("add", "-A"), env, proj)
        sh(git("commit", "-qm", "feature"), env, proj)
        sh(git("switch", "-q", "main"), env, proj)
        # Visit both branches once with devenv: each gets its database.
        sh([*devenv, "up", "--no-processes"], env, proj)
        sh(git("switch", "-q", "feature"), env, proj)
        sh([*devenv, "up", "--no-processes"], env, proj)
        times: dict[str, list[float]] = {"devenv": [], "manual": []}
        up = ([*devenv, "up", "--no-processes"], proj)
        # The manual way, on one database (what it is without devenv): bring it to feature.
        manual_db = cluster.url("manual_dev")
        menv = {**env, "DATABASE_URL": manual_db}
        sh([*devenv, "refresh-db", "--no-cache"], menv, proj)
        sh([sys.executable, "manage.py", "migrate"], menv, django)
        sh([flask, "db", "upgrade"], menv, flask_dir)
        migrate = ([sys.executable, "manage.py", "migrate"], django)
        upgrade = ([flask, "db", "upgrade"], flask_dir)
        # Rounds interleaved (each tool's round trip starts and ends on feature, each on
        # its own database): a machine that slows down or speeds up midway weighs on both.
        for _ in range(args.repeat):
            times["devenv"].append(timed([(git("switch", "-q", "main"), proj), up], env,
                                         "swapped in its own database"))
            times["devenv"].append(timed([(git("switch", "-q", "feature"), proj), up], env,
                                         "swapped in its own database"))
            times["manual"].append(timed([
                ([sys.executable, "manage.py", "migrate", "crm", "0001"], django),
                ([flask, "db", "downgrade", "0007_claim_summaries"], flask_dir),
                (git("switch", "-q", "main"), proj), migrate, upgrade], menv))
            times["manual"].append(timed([(git("switch", "-q", "feature"), proj), migrate,
                                          upgrade], menv))
        med = {k: statistics.median(v) for k, v in times.items()}
        result = {"cpus": os.cpu_count(), "repeat": args.repeat, "fake_members": args.members,
                  "median_s": {k: round(v, 3) for k, v in med.items()},
                  "all_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
                  "speedup": round(med["manual"] / med["devenv"], 2)}
        print(json.dumps(result, indent=2))
        print(f"\nmanual (migrate back, switch, migrate) {med['manual']:6.3f} s   1.00x")
        print(f"git switch && devenv up                {med['devenv']:6.3f} s   "
              f"{med['manual'] / med['devenv']:.2f}x   (goal >= 10x and < 0.5 s)")
    finally:
        subprocess.run([sys.executable, "-m", "devenv", "down", "--volumes", "--yes"],
                       cwd=proj, capture_output=True, timeout=120,
                       env={**os.environ, "DATABASE_URL": cluster.url(DB)})
        cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
