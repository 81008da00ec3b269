from typing import Any

from django.contrib import admin
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from config.admin import ReadOnlyAdmin
from support.models import AccessRecord


@admin.register(AccessRecord)
class AccessRecordAdmin(ReadOnlyAdmin):
    """Who in support looked at whose data: read by admins, changed by nobody."""

    list_display = ["at", "agent", "looked_at", "subject_id", "action", "detail", "ip_prefix"]
    list_filter = ["action", ("agent", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["agent__email", "=subject_id"]
    date_hierarchy = "at"
    list_select_related = ["agent"]
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[AccessRecord]:
        account = User.objects.filter(subject_id=OuterRef("subject_id"))
        return (
            super()
            .get_queryset(request)
            .annotate(
                account_id=Subquery(account.values("pk")[:1]),
                account_email=Subquery(account.values("email")[:1]),
            )
        )

    @admin.display(description=_("user"))
    def looked_at(self, record: Any) -> str:
        if record.account_id is None:
            return str(_("(account deleted)"))
        url = reverse("support:user", args=[record.account_id])
        return format_html('<a href="{}">{}</a>', url, record.account_email)
