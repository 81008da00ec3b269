import json
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
    """Answer 400 to a query or form value holding a NUL character, which no text column stores."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            # The API reads JSON, its own way and once a token is checked: request.POST would
            # read a whole upload first, and leave nothing for the API to read.
            return self.get_response(request)
        # Django's forms refuse a NUL; the admin's filters and searches pass it to the database.
        for values in (request.GET, request.POST):
            # The names too, and every value of a name given twice: the admin filters on them.
            if any("\x00" in "".join([name, *given]) for name, given in values.lists()):
                return HttpResponseBadRequest("A value holds a NUL character.")
        return self.get_response(request)


class ApiAnswersInJsonMiddleware:
    """Answer a machine client in JSON whatever refused its request under /api/."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        refused = 400 <= response.status_code < 500
        if not refused or not request.path.startswith("/api/"):
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        # Refused before the API saw it: an unknown path, a method the path does not take, or
        # Django itself.
        details = {
            404: "No such endpoint: the API is described at /api/v1/docs.",
            405: f"This endpoint takes {response.get('Allow', 'another method')}.",
        }
        detail = details.get(response.status_code, f"{response.reason_phrase}.")
        # The same answer, headers and all, saying it in JSON: its length too, which
        # CommonMiddleware set for the page it replaces (a client would wait for the rest).
        response.content = json.dumps({"detail": detail})
        response["Content-Type"] = "application/json"
        response["Content-Length"] = str(len(response.content))
        return response
