from django.contrib import admin

from .models import Interaction, MemberAttribute


@admin.register(Interaction)
class InteractionAdmin(admin.ModelAdmin):
    list_display = ("occurred_at", "member_id", "channel", "direction", "agent")
    list_filter = ("channel", "direction")
    raw_id_fields = ("member",)


@admin.register(MemberAttribute)
class MemberAttributeAdmin(admin.ModelAdmin):
    list_display = ("member_id", "key", "value", "updated_at")
    raw_id_fields = ("member",)
