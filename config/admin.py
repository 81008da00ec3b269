"""The admin site: Django's own, but a signed-in user without staff status gets a 403."""

from collections.abc import Callable
from functools import update_wrapper
from typing import Any, TypeVar, cast

from django.contrib import admin
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
