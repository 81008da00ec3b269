import contextlib
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from accounts.models import ApiToken, User
from accounts.services import TokenError, api_token_create, api_token_revoke
from config.admin import DateBoundLookups, ModelAdmin
from consent import services
from consent.exceptions import AccountDeleted
from consent.selectors import acted_for_others, consent_for
from consent.wording import staff_choice_sentence
from support.models import AccessRecord


class AdminUserChangeForm(UserChangeForm):
    plan_change_reason = forms.CharField(
        label=_("Reason for a plan change"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Required when the plan changes; kept in the user's audit history."),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "plan" in self.changed_data and not cleaned.get("plan_change_reason", "").strip():
            self.add_error("plan_change_reason", _("Say why the plan changes."))
        return cleaned


@admin.register(User)
class UserAdmin(DateBoundLookups, BaseUserAdmin):
    form = AdminUserChangeForm
    ordering = ["email"]
    list_display = ["email", "plan", "is_staff", "date_joined"]
    list_filter = ["plan", "is_staff", "groups"]
    search_fields = ["email", "name", "=subject_id"]
    readonly_fields = ["subject_id", "consent_state", "signup_pending", "last_login", "date_joined"]
    filter_horizontal = ()  # a plain list of groups: the two-box widget's labels fail axe
    fieldsets = (
        (None, {"fields": ("email", "password", "name", "subject_id")}),
        (_("Plan"), {"fields": ("plan", "plan_change_reason")}),
        (_("Training consent"), {"fields": ("consent_state",)}),
        (
            _("Permissions"),
            {"fields": ("is_active", "signup_pending", "is_staff", "is_superuser", "groups")},
        ),
        (_("Dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)

    @admin.display(description=_("current choice"))
    def consent_state(self, obj: User) -> str:
        if obj.pk is None:
            return "—"
        state = staff_choice_sentence(obj, consent_for(obj))
        return format_html(
            '{} — <a href="{}">{}</a>',
            state,
            reverse("support:user", args=[obj.pk]),
            _("history and propagation in the support console"),
        )

    # The plan is part of the audit: a change goes through the one writer, with the reason.
    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        if obj.is_active:  # switched on here, a sign-up's link is no longer needed, nor good
            obj.signup_pending = False
        new_plan = obj.plan
        if change and "plan" in form.changed_data:
            obj.plan = form.initial["plan"]
        super().save_model(request, obj, form, change)
        if change and new_plan != obj.plan:
            services.user_change_plan(
                user=obj,
                plan=new_plan,
                channel=services.Channel.ADMIN,
                actor=request.user,  # type: ignore[arg-type]
                reason=form.cleaned_data["plan_change_reason"],
            )

    # Deleting goes through the one writer: the audit keeps the events, sinks drop the user.
    def delete_model(self, request: HttpRequest, obj: User) -> None:
        # Deleted meanwhile, by another admin or the first of a double click: it is done.
        with contextlib.suppress(AccountDeleted):
            services.account_delete(
                user=obj,
                channel=services.Channel.ADMIN,
                actor=request.user,  # type: ignore[arg-type]
                reason="Account deleted in the admin",
            )

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        for user in queryset:
            self.delete_model(request, user)

    # Who read a user's history stays named in the record of it, and who changed a user's setting
    # or plan stays answerable by name in that user's history: such an account is deactivated
    # (Active off), never deleted. Without this, the admin offers to delete it, then refuses, or
    # support can only say "an admin" did it.
    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        if obj is not None and (
            AccessRecord.objects.filter(agent=obj).exists() or acted_for_others(obj)
        ):
            return False
        return super().has_delete_permission(request, obj)


# Groups (Support among them) with a plain list of permissions: the two-box widget's labels fail
# axe (aria-prohibited-attr), as on the users' page.
admin.site.unregister(Group)


@admin.register(Group)
class AccessibleGroupAdmin(GroupAdmin):
    filter_horizontal = ()


class ApiTokenForm(forms.Form):
    name = forms.CharField(
        label=_("Name"), max_length=ApiToken.NAME_LENGTH, help_text=_("Who or what uses it.")
    )
    scopes = forms.MultipleChoiceField(
        label=_("Scopes"), choices=ApiToken.Scope.choices, widget=forms.CheckboxSelectMultiple
    )
    expires_at = forms.DateTimeField(
        label=_("Expires at (UTC)"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text=_("Leave empty for a token that does not expire."),
    )


@admin.register(ApiToken)
class ApiTokenAdmin(ModelAdmin):
    """Tokens are made here and shown once; afterwards they can only be read and revoked."""

    list_display = ["name", "prefix", "scope_names", "expires_at", "revoked_at", "last_used_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix"]
    readonly_fields = fields = (
        "name",
        "prefix",
        "scope_names",
        "expires_at",
        "revoked_at",
        "last_used_at",
        "created_by",
        "created_at",
    )
    actions = ["revoke"]

    @admin.display(description=_("scopes"))
    def scope_names(self, obj: ApiToken) -> str:
        return ", ".join(obj.scopes)  # words, not the JSON list the field holds

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoked, never deleted: runs name the token that registered them

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ApiTokenForm(request.POST or None)
        context: dict[str, Any] = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Make an API token"),
            "form": form,
        }
        if request.method == "POST" and form.is_valid():
            try:
                token, secret = api_token_create(
                    **form.cleaned_data,
                    created_by=request.user,  # type: ignore[arg-type]
                )
            except TokenError as error:
                form.add_error(None, str(error))
            else:
                self.log_addition(request, token, [{"added": {}}])
                context |= {"token": token, "secret": secret}
        return TemplateResponse(request, "admin/accounts/apitoken/make.html", context)

    @admin.action(description=_("Revoke the selected tokens"), permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = api_token_revoke(tokens=queryset)
        self.message_user(
            request, _("%(count)d token(s) revoked.") % {"count": revoked}, messages.SUCCESS
        )
