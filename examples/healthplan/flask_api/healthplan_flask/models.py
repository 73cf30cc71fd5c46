"""Tables in the public schema. Flask owns them; Alembic (migrations/) creates them.

Django maps two of them: ``members`` read-only (``managed = False``) and ``member_notes``
as a managed model, whose Django migration therefore has to be faked (see the Makefile).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Index, Numeric, String, Text, func, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db

CLAIM_STATUSES = ("submitted", "approved", "denied", "paid")


class Plan(db.Model):
    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    tier: Mapped[str] = mapped_column(String(20))
    monthly_premium: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    deductible: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    active: Mapped[bool] = mapped_column(server_default=text("true"))

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "code": self.code,
            "name": self.name,
            "tier": self.tier,
            "monthly_premium": str(self.monthly_premium),
            "deductible": str(self.deductible),
            "active": self.active,
        }


class Member(db.Model):
    __tablename__ = "members"
    __table_args__ = (Index("ix_members_last_name_first_name", "last_name", "first_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_number: Mapped[str] = mapped_column(String(20), unique=True)
    first_name: Mapped[str] = mapped_column(String(80))
    last_name: Mapped[str] = mapped_column(String(80))
    date_of_birth: Mapped[dt.date]
    email: Mapped[str | None] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    enrollments: Mapped[list[Enrollment]] = relationship(
        back_populates="member", order_by="Enrollment.start_date"
    )

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "member_number": self.member_number,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "date_of_birth": self.date_of_birth.isoformat(),
            "email": self.email,
            "phone": self.phone,
        }


class Enrollment(db.Model):
    __tablename__ = "enrollments"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id"))
    start_date: Mapped[dt.date]
    end_date: Mapped[dt.date | None]
    status: Mapped[str] = mapped_column(String(20), server_default=text("'active'"))

    member: Mapped[Member] = relationship(back_populates="enrollments")
    plan: Mapped[Plan] = relationship()

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "plan": self.plan.to_dict(),
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat() if self.end_date else None,
            "status": self.status,
        }


class Claim(db.Model):
    __tablename__ = "claims"
    __table_args__ = (
        CheckConstraint(
            "status IN ('submitted', 'approved', 'denied', 'paid')", name="ck_claims_status"
        ),
        Index("ix_claims_member_id_service_date", "member_id", "service_date"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    enrollment_id: Mapped[int | None] = mapped_column(
        ForeignKey("enrollments.id", ondelete="SET NULL"), index=True
    )
    service_date: Mapped[dt.date]
    provider_name: Mapped[str] = mapped_column(String(120))
    procedure_code: Mapped[str] = mapped_column(String(10))
    amount_billed: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    amount_paid: Mapped[Decimal] = mapped_column(Numeric(10, 2), server_default=text("0"))
    status: Mapped[str] = mapped_column(String(20))

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "enrollment_id": self.enrollment_id,
            "service_date": self.service_date.isoformat(),
            "provider_name": self.provider_name,
            "procedure_code": self.procedure_code,
            "amount_billed": str(self.amount_billed),
            "amount_paid": str(self.amount_paid),
            "status": self.status,
        }


class MemberNote(db.Model):
    """Shared with Django (shared.MemberNote). Flask created it, so Flask's migration owns it."""

    __tablename__ = "member_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"), index=True)
    author: Mapped[str] = mapped_column(String(150))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ClaimSummary(db.Model):
    """Written by the worker (worker/healthplan_jobs.py), read here."""

    __tablename__ = "claim_summaries"

    member_id: Mapped[int] = mapped_column(
        ForeignKey("members.id", ondelete="CASCADE"), primary_key=True
    )
    claim_count: Mapped[int]
    amount_billed: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    amount_paid: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    computed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))

    def to_dict(self) -> dict:
        return {
            "member_id": self.member_id,
            "claim_count": self.claim_count,
            "amount_billed": str(self.amount_billed),
            "amount_paid": str(self.amount_paid),
            "computed_at": self.computed_at.isoformat(),
        }
