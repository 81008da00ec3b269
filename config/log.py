"""Logging: one JSON object per line, each carrying the id of the request it serves."""

import logging
import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from celery import signals
from django.http import HttpRequest, HttpResponse

REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="")
REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id() -> str:
    """Return the id of the request (or of the request behind the task) being served, or ""."""
    return REQUEST_ID.get()


class RequestIdMiddleware:
    """Give every request an id, the caller's sane X-Request-ID or a new one; answer with it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        offered = request.headers.get(REQUEST_ID_HEADER, "")
        token = REQUEST_ID.set(offered if _SANE_ID.fullmatch(offered) else uuid.uuid4().hex)
        try:
            response = self.get_response(request)
            response[REQUEST_ID_HEADER] = REQUEST_ID.get()
            return response
        finally:
            REQUEST_ID.reset(token)


# The id travels in the headers of the tasks a request queues, and is written on the deliveries
# of the change it makes, so that the worker doing the work logs it too.
@signals.before_task_publish.connect
def _send_request_id(headers: dict[str, Any], **_: Any) -> None:
    if REQUEST_ID.get():
        headers.setdefault("request_id", REQUEST_ID.get())


@signals.task_prerun.connect
def _take_request_id(task: Any, **_: Any) -> None:
    REQUEST_ID.set(getattr(task.request, "request_id", None) or "")


@signals.task_postrun.connect
def _drop_request_id(**_: Any) -> None:
    REQUEST_ID.set("")


class RequestIdFilter(logging.Filter):
    """Put the request id on every record, for the formatter."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class ClientErrorsInOneLine(logging.Filter):
    """Log a 4xx answer as the one line that says it, without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        # A refused request is not a crash, and its traceback (Django attaches one to every 403)
        # would bury the real ones.
        if 400 <= getattr(record, "status_code", 0) < 500:
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True
