from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils.translation import gettext_lazy as _

from accounts.models import User


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
