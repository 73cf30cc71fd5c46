"""Django-only tables, in the internal_apps schema (first on the connection's search_path)."""

from django.db import models

from core.models import Member


class Interaction(models.Model):
    class Channel(models.TextChoices):
        PHONE = "phone"
        EMAIL = "email"
        CHAT = "chat"
        PORTAL = "portal"
        MAIL = "mail"

    member = models.ForeignKey(Member, on_delete=models.DO_NOTHING, related_name="interactions")
    channel = models.CharField(max_length=10, choices=Channel.choices)
    direction = models.CharField(max_length=8, choices=[("in", "inbound"), ("out", "outbound")])
    agent = models.CharField(max_length=150)
    summary = models.TextField()
    occurred_at = models.DateTimeField()

    class Meta:
        db_table = "interactions"
        ordering = ["occurred_at", "id"]
        indexes = [models.Index(fields=["member", "occurred_at"], name="interactions_member_when")]

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "member_id": self.member_id,
            "channel": self.channel,
            "direction": self.direction,
            "agent": self.agent,
            "summary": self.summary,
            "occurred_at": self.occurred_at.isoformat(),
        }


class MemberAttribute(models.Model):
    """Free-form key/value facts about a member (preferred language, outreach flags...)."""

    member = models.ForeignKey(Member, on_delete=models.DO_NOTHING, related_name="attributes")
    key = models.CharField(max_length=64)
    value = models.CharField(max_length=255)
    updated_at = models.DateTimeField()

    class Meta:
        db_table = "member_attributes"
        constraints = [
            models.UniqueConstraint(fields=["member", "key"], name="member_attributes_member_key")
        ]
        ordering = ["member_id", "key"]
