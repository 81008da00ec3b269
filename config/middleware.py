from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.utils.cache import patch_cache_control


class PrivateResponsesMiddleware:
    """Keep what is personal out of every cache: signed-in pages, exports, receipts, the API."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if (user is not None and user.is_authenticated) or request.path.startswith("/api/"):
            patch_cache_control(response, private=True, no_store=True)
        return response


class NullCharactersRefusedMiddleware:
    """Answer 400 to a query or form value holding a NUL character, which no text column can
    store: Django's forms refuse it, but the admin's filters and searches pass it to the
    database."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        for values in (request.GET, request.POST):
            if any("\x00" in value for value in values.values()):
                return HttpResponseBadRequest("A value holds a NUL character.")
        return self.get_response(request)
