"""The machine clients' API, /api/v1/, with its OpenAPI document and the page that shows it."""

import json
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.renderers import JSONRenderer
from ninja.responses import NinjaJSONEncoder

from consent.api import ScopeMissing
from consent.api import router as consent_router


class Encoder(NinjaJSONEncoder):
    """An encoder keeping times to the microsecond, as given and as the snapshots say them."""

    def default(self, o: Any) -> Any:
        # Django's encoder cuts times to the millisecond: a pipeline would not get back the as_of
        # it was answered for.
        if isinstance(o, datetime):
            return o.isoformat()
        return super().default(o)


class Renderer(JSONRenderer):
    encoder_class = Encoder


class BodyUnreadable(ValueError):
    """The body is not JSON the API reads: ninja answers 400, and this says why."""


class OnceEachParser(Parser):
    """Read JSON bodies in which each key is said once."""

    def parse_body(self, request: HttpRequest) -> dict[str, Any]:
        # A body that says as_of twice is refused, not read as whichever of them a reader keeps
        # (a proxy that checks the first, the API the last).
        try:
            body: dict[str, Any] = json.loads(request.body, object_pairs_hook=_once_each)
        except (ValueError, RecursionError) as error:  # not JSON, not UTF-8, nested too deep
            raise BodyUnreadable(str(error) or type(error).__name__) from None
        return body


def _once_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) < len(pairs):
        (twice, _), *_ = Counter(key for key, _ in pairs).most_common(1)
        raise ValueError(f"it gives {twice[:40]!r} more than once")
    return found


def _documents(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Let the OpenAPI document and its page take GET alone."""
    # Another method gets the 405 every endpoint gives, not CSRF's 403: nothing here changes
    # anything.
    return csrf_exempt(require_GET(view))


api = NinjaAPI(
    title="Help improve the model: consent for training pipelines",
    version="1",
    description="Point-in-time eligibility of users' chats and coding sessions for training, "
    "and the ledger of training runs with their fixed snapshots.",
    urls_namespace="api",
    renderer=Renderer(),
    parser=OnceEachParser(),
    docs_url="/docs",
    docs_decorator=_documents,
)
api.add_router("/", consent_router)

SHOWN_ERRORS = 20


@api.exception_handler(ValidationError)
def refuse_invalid(request: HttpRequest, error: ValidationError) -> HttpResponse:
    """Refuse a request whole with 400, naming its first faults and where each is in it."""
    # The first few, not a 100,000 of them; ["body", "pairs", "0", "1"] is the first pair's time.
    faults = [
        {"where": _where(fault.get("loc", ())), "problem": fault.get("msg")}
        for fault in error.errors[:SHOWN_ERRORS]
    ]
    body = {"detail": "The request was refused whole.", "faults": len(error.errors)}
    return api.create_response(request, body | {"first_faults": faults}, status=400)


def _where(location: tuple) -> list[str]:
    # Ninja says where a fault is as (source, the view's argument, path...). Every view here
    # takes the whole body as its argument `body`, a name that means nothing to a client.
    parts = [str(part) for part in location]
    return parts[:1] + parts[2:] if parts[:2] == ["body", "body"] else parts


@api.exception_handler(HttpError)
def refuse(request: HttpRequest, error: HttpError) -> HttpResponse:
    """Say what is wrong, as ninja does, and why a body could not be read."""
    detail = str(error)
    # Ninja says why only with DEBUG on; the reason is the JSON decoder's, nothing of the server's.
    if isinstance(error.__cause__, BodyUnreadable):
        detail = f"The body is not JSON the API can read: {error.__cause__}."
    return api.create_response(request, {"detail": detail}, status=error.status_code)


@api.exception_handler(AuthenticationError)
def refuse_unauthenticated(request: HttpRequest, error: AuthenticationError) -> HttpResponse:
    """Answer 401 with the scheme wanted (RFC 6750), the same whatever was wrong with the token."""
    body = {"detail": "A valid API token is needed: Authorization: Bearer <token>."}
    response = api.create_response(request, body, status=401)
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    # error="invalid_token" says only that a token was sent, which the client knows already;
    # none is named for a request without one (RFC 6750, 3.1).
    sent = scheme.lower() == "bearer" and token.strip()
    response["WWW-Authenticate"] = 'Bearer realm="api"' + (
        ', error="invalid_token"' if sent else ""
    )
    return response


@api.exception_handler(ScopeMissing)
def refuse_out_of_scope(request: HttpRequest, error: ScopeMissing) -> HttpResponse:
    """403 saying which scope the token lacks, in words and as RFC 6750 says it."""
    response = api.create_response(request, {"detail": str(error)}, status=403)
    response["WWW-Authenticate"] = (
        f'Bearer realm="api", error="insufficient_scope", scope="{error.scope}"'
    )
    return response


@api.exception_handler(RequestDataTooBig)
def refuse_too_large(request: HttpRequest, error: RequestDataTooBig) -> HttpResponse:
    size = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = {"detail": f"The request is larger than {size:,} bytes: send fewer pairs a request."}
    return api.create_response(request, body, status=413)
