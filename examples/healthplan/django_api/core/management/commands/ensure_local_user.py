"""Make sure the local admin user exists, with the known local password. Idempotent.

For developer machines only (refuses to run with DEBUG off unless --force). The password
hash uses a salt derived from the username, so rebuilding a database gives the same row
byte for byte; that is fine for a throw-away local password and wrong anywhere else.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password, make_password
from django.core.management.base import BaseCommand, CommandError

DATE_JOINED = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


class Command(BaseCommand):
    help = "Create or update the local superuser (LOCAL_ADMIN_USER / LOCAL_ADMIN_PASSWORD)."

    def add_arguments(self, parser):
        parser.add_argument("--username", default=os.environ.get("LOCAL_ADMIN_USER", "admin"))
        parser.add_argument("--password",
                            default=os.environ.get("LOCAL_ADMIN_PASSWORD", "admin"))
        parser.add_argument("--force", action="store_true", help="run even with DEBUG off")

    def handle(self, *args, username: str, password: str, force: bool, **options):
        if not settings.DEBUG and not force:
            raise CommandError("refusing to create a known-password admin with DEBUG off")
        User = get_user_model()
        wanted = {
            "email": f"{username}@localhost",
            "is_staff": True,
            "is_superuser": True,
            "is_active": True,
        }
        user, created = User.objects.get_or_create(
            username=username, defaults={**wanted, "date_joined": DATE_JOINED}
        )
        changed = created
        for field, value in wanted.items():
            if getattr(user, field) != value:
                setattr(user, field, value)
                changed = True
        if created or not check_password(password, user.password):
            salt = hashlib.sha256(f"devenv-local-user:{username}".encode()).hexdigest()[:22]
            user.password = make_password(password, salt=salt)
            changed = True
        if changed:
            user.save()
        state = "created" if created else ("updated" if changed else "unchanged")
        self.stdout.write(f"local user '{username}': {state}")
