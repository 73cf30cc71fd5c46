from django.contrib import admin

from .models import MemberNote


@admin.register(MemberNote)
class MemberNoteAdmin(admin.ModelAdmin):
    list_display = ("created_at", "member_id", "author")
    raw_id_fields = ("member",)
