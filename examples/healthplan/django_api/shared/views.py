from __future__ import annotations

import json

from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from core.auth import jwt_required
from core.models import Member

from .models import MemberNote


@csrf_exempt
@require_http_methods(["GET", "POST"])
@jwt_required
def member_notes(request, member_id: int):
    member = get_object_or_404(Member, pk=member_id)
    if request.method == "POST":
        try:
            body = json.loads(request.body or b"{}")
        except json.JSONDecodeError:
            return JsonResponse({"error": "invalid_json"}, status=400)
        text = (body.get("body") or "").strip()
        if not text:
            return JsonResponse({"error": "body is required"}, status=400)
        note = MemberNote.objects.create(
            member=member, author=request.jwt_claims["sub"], body=text, created_at=timezone.now()
        )
        return JsonResponse(note.to_dict(), status=201)
    notes = [n.to_dict() for n in MemberNote.objects.filter(member=member)]
    return JsonResponse({"member_id": member.pk, "notes": notes})
