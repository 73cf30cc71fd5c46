"""public.member_notes, mapped by both apps.

Flask created the table (Alembic revision 0004_member_notes) long before Django existed.
Django manages it now -- notes moved to Django -- so it has a real CreateModel migration,
which finds the table already there on every database built from Flask's migrations:
apply it with `python manage.py migrate shared 0001 --fake` first.
"""

from django.db import models

from core.models import Member


class MemberNote(models.Model):
    id = models.AutoField(primary_key=True)  # Flask made it a serial, not a bigint
    member = models.ForeignKey(Member, on_delete=models.CASCADE, related_name="notes")
    author = models.CharField(max_length=150)
    body = models.TextField()
    created_at = models.DateTimeField()

    class Meta:
        db_table = 'public"."member_notes'
        ordering = ["created_at", "id"]

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "member_id": self.member_id,
            "author": self.author,
            "body": self.body,
            "created_at": self.created_at.isoformat(),
        }
