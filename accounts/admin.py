from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from accounts.models import User
from consent import services


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "plan", "is_staff", "date_joined"]
    list_filter = ["plan", "is_staff", "groups"]
    search_fields = ["email", "name", "=subject_id"]
    readonly_fields = ["subject_id", "plan", "last_login", "date_joined"]
    fieldsets = (
        (None, {"fields": ("email", "password", "name", "plan", "subject_id")}),
        (_("Permissions"), {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
        (_("Dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)

    # Deleting goes through the one writer: the audit keeps the events, sinks drop the user.
    def delete_model(self, request: HttpRequest, obj: User) -> None:
        services.account_delete(
            user=obj,
            channel=services.Channel.ADMIN,
            actor=request.user,  # type: ignore[arg-type]
            reason="Account deleted in the admin",
        )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            self.delete_model(request, user)
