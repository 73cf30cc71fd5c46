"""Routes Django serves; everything else falls through to the proxy (-> Flask)."""

from django.contrib import admin
from django.urls import path, re_path

from core import proxy
from core import views as core_views
from crm import views as crm_views
from shared import views as shared_views

urlpatterns = [
    path("health", core_views.health),
    path("api/token", core_views.token),
    path("api/me", core_views.me),
    path("api/members/<int:member_id>/notes", shared_views.member_notes),
    path("api/members/<int:member_id>/interactions", crm_views.member_interactions),
    path("api/members/<int:member_id>/attributes", crm_views.member_attributes),
    path("admin/", admin.site.urls),
    # Strangler fig: what Django does not serve yet, Flask still does.
    re_path(r"^(?P<path>.*)$", proxy.forward),
]
