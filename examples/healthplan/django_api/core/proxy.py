"""Forward every request Django does not route itself to the Flask app, unchanged.

Django never interprets the Authorization header here: Flask checks the same JWT itself.
"""

from __future__ import annotations

import requests
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

# RFC 9110 hop-by-hop headers, plus the ones requests/the WSGI server recompute.
HOP_BY_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "transfer-encoding", "upgrade", "host", "content-length", "content-encoding",
}

_session = requests.Session()


@csrf_exempt
def forward(request, path: str):
    url = f"{settings.FLASK_URL}/{path}"
    if query := request.META.get("QUERY_STRING"):
        url = f"{url}?{query}"
    headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
    client = request.META.get("REMOTE_ADDR", "")
    prior = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{prior}, {client}" if prior else client
    headers["X-Forwarded-Host"] = request.get_host()
    headers["X-Forwarded-Proto"] = request.scheme
    try:
        upstream = _session.request(
            request.method,
            url,
            data=request.body or None,
            headers=headers,
            allow_redirects=False,
            timeout=settings.PROXY_TIMEOUT_SECONDS,
        )
    except requests.RequestException as exc:
        return JsonResponse(
            {"error": "upstream_unavailable", "detail": f"{type(exc).__name__}: {exc}"},
            status=502,
        )
    response = HttpResponse(upstream.content, status=upstream.status_code)
    for key, value in upstream.headers.items():
        if key.lower() not in HOP_BY_HOP:
            response[key] = value
    response["Via"] = "1.1 healthplan-django"
    return response
