"""The admin site: Django's own, but a signed-in user without staff status gets a 403."""

from collections.abc import Callable
from functools import update_wrapper
from typing import Any, TypeVar, cast

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.utils.translation import gettext_lazy as _

View = TypeVar("View", bound=Callable[..., HttpResponseBase])


class AdminSite(admin.AdminSite):
    site_header = _("Consent administration")
    site_title = _("Consent administration")
    index_title = _("Policies, audit, deliveries and users")

    def _refuse_signed_in_non_staff(self, request: HttpRequest) -> None:
        # Django would offer its sign-in form again; a support agent or a user must not be
        # invited to try other credentials here, and a 403 says plainly that this is not theirs.
        if request.user.is_authenticated and not self.has_permission(request):
            raise PermissionDenied

    def admin_view(self, view: View, cacheable: bool = False) -> View:
        inner = super().admin_view(view, cacheable)

        def guarded(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponseBase:
            self._refuse_signed_in_non_staff(request)
            return inner(request, *args, **kwargs)

        return cast(View, update_wrapper(guarded, inner))

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None):
        self._refuse_signed_in_non_staff(request)
        return super().login(request, extra_context)


class DateBoundChangeList(ChangeList):
    """Django's change list, refusing a date hierarchy year past 9998 as a bad lookup (Django
    itself lets the OverflowError or ValueError of such a year become a 500)."""

    def get_filters(self, request: HttpRequest) -> Any:
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as error:
            raise IncorrectLookupParameters(error) from error


class DateHierarchyAdmin(admin.ModelAdmin):
    """A model admin whose date hierarchy answers any year without a 500."""

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return DateBoundChangeList
