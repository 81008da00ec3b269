"""The machine clients' API, /api/v1/, and its OpenAPI document (/api/v1/openapi.json)."""

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import ValidationError

from consent.api import router as consent_router

api = NinjaAPI(
    title="Help improve the model: consent for training pipelines",
    version="1",
    description="Point-in-time eligibility of users' chats and coding sessions for training, "
    "and the ledger of training runs with their fixed snapshots.",
    urls_namespace="api",
    docs_url=None,
)
api.add_router("/", consent_router)

SHOWN_ERRORS = 20


@api.exception_handler(ValidationError)
def refuse_invalid(request: HttpRequest, error: ValidationError) -> HttpResponse:
    """Refuse a request whole with 400, naming its first faults (not a 100,000 of them)."""
    faults = [
        {"where": [str(part) for part in fault.get("loc", ())], "problem": fault.get("msg")}
        for fault in error.errors[:SHOWN_ERRORS]
    ]
    body = {"detail": "The request was refused whole.", "faults": len(error.errors)}
    return api.create_response(request, body | {"first_faults": faults}, status=400)
