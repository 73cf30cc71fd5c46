"""HTTP endpoints still served by Flask (Django forwards everything it doesn't serve)."""

from __future__ import annotations

import os

from flask import Blueprint, abort, g, jsonify, request
from sqlalchemy import func, select, text

from .auth import require_jwt
from .extensions import db
from .models import CLAIM_STATUSES, Claim, ClaimSummary, Member, MemberNote, Plan

bp = Blueprint("api", __name__)


@bp.get("/health")
def health():
    try:
        revision = db.session.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception as exc:  # any DB failure makes the app unhealthy
        db.session.rollback()
        return jsonify({"status": "error", "database": str(exc).splitlines()[0]}), 503
    return jsonify({"status": "ok", "database": "ok", "schema_revision": revision})


@bp.get("/api/whoami")
@require_jwt
def whoami():
    return jsonify({"served_by": "flask", "claims": g.jwt_claims})


@bp.get("/api/plans")
@require_jwt
def list_plans():
    include_retired = request.args.get("include_retired") == "1"
    query = select(Plan).order_by(Plan.id)
    if not include_retired:
        query = query.where(Plan.active.is_(True))
    return jsonify([p.to_dict() for p in db.session.scalars(query)])


@bp.get("/api/members")
@require_jwt
def list_members():
    limit = min(request.args.get("limit", 50, type=int), 500)
    after_id = request.args.get("after_id", 0, type=int)
    query = select(Member).where(Member.id > after_id).order_by(Member.id).limit(limit)
    if last_name := request.args.get("last_name"):
        query = query.where(Member.last_name == last_name)
    members = [m.to_dict() for m in db.session.scalars(query)]
    return jsonify({"members": members, "next_after_id": members[-1]["id"] if members else None})


@bp.get("/api/members/<int:member_id>")
@require_jwt
def get_member(member_id: int):
    member = db.session.get(Member, member_id) or abort(404)
    notes = db.session.scalar(
        select(func.count()).select_from(MemberNote).where(MemberNote.member_id == member_id)
    )
    body = member.to_dict()
    body["enrollments"] = [e.to_dict() for e in member.enrollments]
    body["note_count"] = notes
    return jsonify(body)


@bp.get("/api/members/<int:member_id>/claims")
@require_jwt
def member_claims(member_id: int):
    db.session.get(Member, member_id) or abort(404)
    query = select(Claim).where(Claim.member_id == member_id).order_by(Claim.service_date, Claim.id)
    status = request.args.get("status")
    if status:
        if status not in CLAIM_STATUSES:
            return jsonify({"error": f"status must be one of {', '.join(CLAIM_STATUSES)}"}), 400
        query = query.where(Claim.status == status)
    return jsonify([c.to_dict() for c in db.session.scalars(query)])


# The worker's queue (worker/healthplan_jobs.py). The job is named, not imported: the
# worker has the code, this app only puts the call on Redis.
JOB_QUEUE = "healthplan"
SUMMARIZE_JOB = "healthplan_jobs.summarize_claims"


@bp.post("/api/members/<int:member_id>/claims-summary")
@require_jwt
def enqueue_claims_summary(member_id: int):
    db.session.get(Member, member_id) or abort(404)
    url = os.environ.get("REDIS_URL")
    if not url:  # devenv sets it when the redis service runs (profile local)
        return jsonify({"error": "no job queue: REDIS_URL is not set"}), 503
    from redis import Redis  # only this endpoint needs the queue
    from rq import Queue

    job = Queue(JOB_QUEUE, connection=Redis.from_url(url)).enqueue(SUMMARIZE_JOB, member_id)
    return jsonify({"job_id": job.id, "queue": JOB_QUEUE}), 202


@bp.get("/api/members/<int:member_id>/claims-summary")
@require_jwt
def get_claims_summary(member_id: int):
    summary = db.session.get(ClaimSummary, member_id) or abort(404)
    return jsonify(summary.to_dict())


@bp.app_errorhandler(404)
def not_found(_exc):
    return jsonify({"error": "not_found"}), 404
