from __future__ import annotations

import json

from django.conf import settings
from django.contrib.auth import authenticate
from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from .auth import issue_token, jwt_required, refuse


@require_GET
def health(request):
    try:
        with connection.cursor() as cur:
            cur.execute("SELECT count(*) FROM django_migrations")
            (applied,) = cur.fetchone()
    except DatabaseError as exc:
        return JsonResponse(
            {"status": "error", "database": str(exc).splitlines()[0]}, status=503
        )
    return JsonResponse({"status": "ok", "database": "ok", "migrations_applied": applied})


@csrf_exempt
@require_POST
def token(request):
    """POST {"username": ..., "password": ...} (JSON or form) -> {"access_token": ...}."""
    if not settings.JWT_SECRET:
        return refuse("server_misconfigured", "JWT_SECRET is not set", 500)
    if request.content_type == "application/json":
        try:
            body = json.loads(request.body or b"{}")
        except json.JSONDecodeError:
            return JsonResponse({"error": "invalid_json"}, status=400)
    else:
        body = request.POST
    user = authenticate(
        request, username=body.get("username", ""), password=body.get("password", "")
    )
    if user is None or not user.is_active:
        return refuse("invalid_credentials", "unknown user or wrong password")
    return JsonResponse(
        {
            "access_token": issue_token(user),
            "token_type": "Bearer",
            "expires_in": settings.JWT_LIFETIME_SECONDS,
        }
    )


@require_GET
@jwt_required
def me(request):
    return JsonResponse({"served_by": "django", "claims": request.jwt_claims})
