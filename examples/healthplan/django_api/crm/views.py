from __future__ import annotations

import json

from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from core.auth import jwt_required
from core.models import Member

from .models import Interaction, MemberAttribute


@csrf_exempt
@require_http_methods(["GET", "POST"])
@jwt_required
def member_interactions(request, member_id: int):
    member = get_object_or_404(Member, pk=member_id)
    if request.method == "POST":
        try:
            body = json.loads(request.body or b"{}")
        except json.JSONDecodeError:
            return JsonResponse({"error": "invalid_json"}, status=400)
        channel = body.get("channel")
        if channel not in Interaction.Channel.values:
            return JsonResponse(
                {"error": f"channel must be one of {', '.join(Interaction.Channel.values)}"},
                status=400,
            )
        occurred = parse_datetime(body["occurred_at"]) if body.get("occurred_at") else None
        interaction = Interaction.objects.create(
            member=member,
            channel=channel,
            direction=body.get("direction", "in"),
            agent=request.jwt_claims["sub"],
            summary=body.get("summary", ""),
            occurred_at=occurred or timezone.now(),
        )
        return JsonResponse(interaction.to_dict(), status=201)
    limit = min(int(request.GET.get("limit", "100")), 500)
    rows = Interaction.objects.filter(member=member).order_by("-occurred_at", "-id")[:limit]
    return JsonResponse({"member_id": member.pk, "interactions": [i.to_dict() for i in rows]})


@require_GET
@jwt_required
def member_attributes(request, member_id: int):
    member = get_object_or_404(Member, pk=member_id)
    attrs = MemberAttribute.objects.filter(member=member).order_by("key")
    return JsonResponse({"member_id": member.pk, "attributes": {a.key: a.value for a in attrs}})
