"""Bearer-token checks. Tokens are issued by Django (POST /api/token); both apps share
the HS256 secret (env JWT_SECRET), the issuer and the audience."""

from __future__ import annotations

from functools import wraps

import jwt
from flask import current_app, g, jsonify, request

ISSUER = "healthplan-django"
AUDIENCE = "healthplan-api"


def _refuse(error: str, detail: str, status: int = 401):
    response = jsonify({"error": error, "detail": detail})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = f'Bearer error="{error}"'
    return response


def require_jwt(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        secret = current_app.config.get("JWT_SECRET")
        if not secret:
            return _refuse("server_misconfigured", "JWT_SECRET is not set", 500)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _refuse("missing_token", "send Authorization: Bearer <token>")
        try:
            claims = jwt.decode(
                token.strip(),
                secret,
                algorithms=["HS256"],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.InvalidTokenError as exc:
            return _refuse("invalid_token", str(exc))
        g.jwt_claims = claims
        return view(*args, **kwargs)

    return wrapper
