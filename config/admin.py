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
    """Django's change list, refusing a year out of range (0, 99999) as a bad lookup, not a 500."""

    def get_filters(self, request: HttpRequest) -> Any:
        # Django lets a year out of range in the date hierarchy raise here, as a 500.
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as error:
            raise IncorrectLookupParameters(error) from error

    def get_results(self, request: HttpRequest) -> None:
        # A year out of range in any `field__year=` of the address raises here, as the query is
        # built.
        try:
            super().get_results(request)
        except (OverflowError, ValueError) as error:
            raise IncorrectLookupParameters(error) from error


class DateBoundLookups:
    """Make a model admin's change list answer any year in its address without a 500."""

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return DateBoundChangeList


class ModelAdmin(DateBoundLookups, admin.ModelAdmin):
    """Django's model admin, answering any year in a change list's address without a 500."""


class ReadOnly:
    """Read, search and filter; no add, change or delete, for superusers too."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyAdmin(ReadOnly, ModelAdmin):
    """A model admin that shows what is kept and changes none of it."""
