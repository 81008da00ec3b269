"""/api/v1/ for training pipelines: eligibility in bulk, training runs and their snapshots."""

from datetime import datetime
from typing import Annotated
from uuid import UUID

from django.http import FileResponse, HttpRequest
from ninja import Field, Router, Schema, Status
from ninja.errors import AuthorizationError, HttpError
from ninja.security import HttpBearer
from pydantic import AfterValidator, AwareDatetime, BeforeValidator, ConfigDict
from pydantic_core import PydanticCustomError

from accounts.models import ApiToken
from accounts.services import api_token_use
from consent.eligibility import eligibility
from consent.exceptions import ConsentError, RunExists
from consent.models import TrainingRun
from consent.moments import (
    EXAMPLE,
    moment_check,
    moment_past,
    moment_settled,
    moment_within_utc,
)
from consent.runs import run_eligibility, run_files, run_name, run_register

MAX_PAIRS = 100_000
PARQUET = "application/vnd.apache.parquet"


class ScopeMissing(AuthorizationError):
    def __init__(self, scope: str) -> None:
        super().__init__(message=f"This token lacks the {scope} scope.")
        self.scope = scope


class TokenAuth(HttpBearer):
    """A usable API token with the scope: 401 without one, 403 if it lacks the scope."""

    def __init__(self, scope: str) -> None:
        super().__init__()
        self.scope = scope

    def __call__(self, request: HttpRequest) -> ApiToken | None:
        # As HttpBearer reads the header, but never logging it: it may hold a token.
        scheme, _, token = request.headers.get(self.header, "").partition(" ")
        return self.authenticate(request, token) if scheme.lower() == "bearer" else None

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        api_token = api_token_use(secret=token, scope=self.scope)
        if api_token is not None and self.scope not in api_token.scopes:
            raise ScopeMissing(self.scope)
        return api_token


class TokenRequest(HttpRequest):
    auth: ApiToken


router = Router()


def _moment(value: object) -> object:
    # Pydantic would also take a number, or text of one, for seconds since 1970, and moments
    # without seconds or with a zone written +0100. It then parses the text itself, faster.
    try:
        if isinstance(value, datetime):
            return moment_within_utc(value)
        if not isinstance(value, str):
            raise ValueError(f"a moment is RFC 3339 text with seconds and a zone, e.g. {EXAMPLE}")
        moment_check(value)
    except ValueError as error:
        raise PydanticCustomError("moment", str(error)) from None
    return value


def _not_to_come(moment: datetime | None) -> datetime | None:
    try:
        return moment if moment is None else moment_past(moment)
    except ValueError as error:
        raise PydanticCustomError("moment", str(error)) from None


def _run_name(name: str) -> str:
    try:
        return run_name(name)
    except ConsentError as error:
        raise PydanticCustomError("name", str(error)) from None


Moment = Annotated[AwareDatetime, BeforeValidator(_moment)]
AsOf = Annotated[Moment | None, AfterValidator(_not_to_come)]
Pair = tuple[UUID, Moment]
REFUSE_UNKNOWN = ConfigDict(extra="forbid")  # a field the API does not know is a mistake: say so


class Problem(Schema):
    detail: str = Field(description="Why the request was refused.")


class Refusal(Problem):
    faults: int | None = Field(None, description="How many faults the request has.")
    first_faults: list[dict] | None = Field(None, description="Where the first ones are, and why.")


REFUSALS: dict[int, type[Schema]] = {400: Refusal, 401: Problem, 403: Problem}


class EligibilityIn(Schema):
    model_config = REFUSE_UNKNOWN
    as_of: AsOf = Field(
        None,
        description="The moment the run selects its data (R); if left out, the latest moment "
        "by which every change made has been committed (a minute ago).",
    )
    pairs: list[Pair] = Field(
        max_length=MAX_PAIRS,
        description="Each a subject id and the moment (RFC 3339, with a zone) its data was last "
        "active: a chat or coding session new or resumed then.",
    )


class EligibilityOut(Schema):
    as_of: datetime
    eligible: list[bool] = Field(description="One answer per pair, in order.")


class PairsIn(Schema):
    model_config = REFUSE_UNKNOWN
    pairs: list[Pair] = Field(max_length=MAX_PAIRS)


class RunIn(Schema):
    model_config = REFUSE_UNKNOWN
    name: Annotated[str, AfterValidator(_run_name)] = Field(
        min_length=1, max_length=TrainingRun.NAME_LENGTH
    )
    as_of: AsOf = Field(
        None,
        description="At least a minute ago, by when every change made has been committed, so "
        "that the fixed snapshot misses none; the latest such moment if left out.",
    )


class SnapshotFile(Schema):
    name: str
    rows: int
    sha256: str
    url: str


class RunOut(Schema):
    id: UUID
    name: str
    as_of: datetime
    created_at: datetime
    snapshot: dict = Field(description="The snapshot's manifest.")
    files: list[SnapshotFile]


def _run(run_id: UUID) -> TrainingRun:
    run = TrainingRun.objects.filter(pk=run_id).first()
    if run is None:
        raise HttpError(404, "No training run has this id.")
    return run


def _run_out(request: HttpRequest, run: TrainingRun) -> dict:
    files = [
        {**file, "url": request.build_absolute_uri(f"/api/v1/runs/{run.pk}/files/{file['name']}")}
        for file in run.snapshot["files"]
    ]
    return {
        "id": run.pk,
        "name": run.name,
        "as_of": run.as_of,
        "created_at": run.created_at,
        "snapshot": run.snapshot,
        "files": files,
    }


@router.post(
    "/eligibility",
    response={200: EligibilityOut, **REFUSALS},
    auth=TokenAuth(ApiToken.Scope.ELIGIBILITY),
)
def eligibility_answer(request: HttpRequest, body: EligibilityIn) -> dict:
    """Answer, for each pair, whether a run selecting data at as_of may use that data."""
    as_of = body.as_of or moment_settled()
    return {"as_of": as_of, "eligible": eligibility(body.pairs, as_of=as_of)}


@router.post(
    "/runs",
    response={201: RunOut, 200: RunOut, 409: Problem, **REFUSALS},
    auth=TokenAuth(ApiToken.Scope.RUNS),
)
def run_create(request: TokenRequest, body: RunIn) -> Status:
    """Register a training run and take its snapshot, fixed from then on. A name is registered
    once: asked again with the same as_of, the run already registered is returned (200); with
    another as_of, or none, the request is refused (409)."""
    try:
        run, new = run_register(name=body.name, as_of=body.as_of, token=request.auth)
    except RunExists as error:
        where = request.build_absolute_uri(f"/api/v1/runs/{error.run.pk}")
        raise HttpError(409, f"{error} The run: {where}") from error
    except ConsentError as error:
        raise HttpError(400, str(error)) from error
    return Status(201 if new else 200, _run_out(request, run))


@router.get("/runs", response={200: list[RunOut], **REFUSALS}, auth=TokenAuth(ApiToken.Scope.RUNS))
def run_list(request: HttpRequest) -> list[dict]:
    """The 100 latest registered runs, newest first."""
    return [_run_out(request, run) for run in TrainingRun.objects.all()[:100]]


@router.get(
    "/runs/{run_id}",
    response={200: RunOut, 404: Problem, **REFUSALS},
    auth=TokenAuth(ApiToken.Scope.RUNS),
)
def run_detail(request: HttpRequest, run_id: UUID) -> dict:
    """A registered run: its moment and its snapshot's manifest and files."""
    return _run_out(request, _run(run_id))


@router.get(
    "/runs/{run_id}/files/{name}",
    response={404: Problem, **REFUSALS},
    auth=TokenAuth(ApiToken.Scope.RUNS),
    openapi_extra={
        "responses": {
            "200": {
                "description": "The file, as its SHA-256 in the manifest says.",
                "content": {PARQUET: {}},
            }
        }
    },
)
def run_file(request: HttpRequest, run_id: UUID, name: str) -> FileResponse:
    """One Parquet file of the run's snapshot."""
    run = _run(run_id)
    path = next((path for path in run_files(run) if path.name == name), None)
    if path is None or not path.exists():
        raise HttpError(404, "The run's snapshot has no such file.")
    return FileResponse(path.open("rb"), as_attachment=True, filename=name, content_type=PARQUET)


@router.post(
    "/runs/{run_id}/eligibility",
    response={200: EligibilityOut, 404: Problem, **REFUSALS},
    auth=TokenAuth(ApiToken.Scope.RUNS),
)
def run_eligibility_answer(request: HttpRequest, run_id: UUID, body: PairsIn) -> dict:
    """Answer pairs as the run's snapshot does: the same answers, whenever asked."""
    run = _run(run_id)
    return {"as_of": run.as_of, "eligible": run_eligibility(run, body.pairs)}
