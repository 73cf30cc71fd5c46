"""JWTs shared with Flask: HS256 over settings.JWT_SECRET, fixed issuer and audience."""

from __future__ import annotations

import time
from functools import wraps

import jwt
from django.conf import settings
from django.http import JsonResponse


def issue_token(user) -> str:
    now = int(time.time())
    claims = {
        "sub": user.get_username(),
        "uid": user.pk,
        "staff": user.is_staff,
        "iss": settings.JWT_ISSUER,
        "aud": settings.JWT_AUDIENCE,
        "iat": now,
        "exp": now + settings.JWT_LIFETIME_SECONDS,
    }
    return jwt.encode(claims, settings.JWT_SECRET, algorithm="HS256")


def refuse(error: str, detail: str, status: int = 401) -> JsonResponse:
    response = JsonResponse({"error": error, "detail": detail}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = f'Bearer error="{error}"'
    return response


def jwt_required(view):
    """Accept only requests with a valid bearer token; its claims go to request.jwt_claims."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not settings.JWT_SECRET:
            return refuse("server_misconfigured", "JWT_SECRET is not set", 500)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return refuse("missing_token", "send Authorization: Bearer <token>")
        try:
            request.jwt_claims = jwt.decode(
                token.strip(),
                settings.JWT_SECRET,
                algorithms=["HS256"],
                audience=settings.JWT_AUDIENCE,
                issuer=settings.JWT_ISSUER,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            return refuse("invalid_token", str(exc))
        return view(request, *args, **kwargs)

    return wrapper
