"""A user's own audit history, as people read it: one-line summaries, CSV and JSON exports."""

import csv
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.db.models import Choices
from django.http import JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from accounts.models import User
from consent.models import ConsentEvent
from consent.selectors import Propagation

Kind = ConsentEvent.Kind
Role = ConsentEvent.Role

EXPORT_FIELDS = (
    "number",
    "time",
    "event",
    "summary",
    "before",
    "after",
    "channel",
    "acted_by",
    "policy_version",
    "shown_default",
    "browser_opt_out_signal",
    "reason",
    "reference",
    "ip_prefix",
    "user_agent",
    "hash",
)
# Support's exports also name the staff account that acted; a user's own export does not.
SUPPORT_EXPORT_FIELDS = (*EXPORT_FIELDS, "acted_by_email")


def choice_label(choices: type[Choices], value: str) -> str:
    """Return the label of a stored choice, or the value itself if it is no longer a choice."""
    try:
        return str(choices(value).label)
    except ValueError:
        return value


def event_summary(event: ConsentEvent) -> str:
    """Say in a few words what the event did to the setting."""
    if event.kind == Kind.DECISION:
        if event.before == event.after:
            if event.allows_training:
                return _("Confirmed under new terms: training allowed")
            return _("Confirmed under new terms: training declined")
        if event.allows_training:
            return _("Allowed training on chats and coding sessions")
        return _("Declined training on chats and coding sessions")
    if event.kind == Kind.PLAN_CHANGED:
        plan = dict(User.Plan.choices).get(event.plan, event.plan)
        return _("Plan changed to %(plan)s") % {"plan": plan}
    if event.kind == Kind.NOTICE_SERVED:
        if event.shown_default:
            return _("Shown the notice, with the setting On by default")
        return _("Shown the notice, with the setting Off by default")
    return choice_label(Kind, event.kind)


def actor_label(event: ConsentEvent) -> str:
    """Say who acted, as the user reads it."""
    return {
        Role.USER: _("You"),
        Role.SUPPORT: _("Support, on your request"),
        Role.ADMIN: _("An admin"),
        Role.SYSTEM: _("The system"),
    }[Role(event.actor_role)]


@dataclass(frozen=True)
class HistoryLine:
    """One event as the user's own history shows it."""

    event: ConsentEvent
    summary: str
    facts: list[str]
    reached: list[str]
    receipt: bool

    @property
    def receipt_label(self) -> str:
        return _("of event %(number)s") % {"number": self.event.number}


def history_lines(
    events: Iterable[ConsentEvent], propagation: dict[int, Propagation]
) -> list[HistoryLine]:
    return [
        HistoryLine(
            event,
            summary=event_summary(event),
            facts=_facts(event),
            reached=_reached(propagation.get(event.pk)),
            receipt=event.kind == Kind.DECISION,
        )
        for event in events
    ]


def _facts(event: ConsentEvent) -> list[str]:
    # The policy version follows, in the page, as a link to its terms.
    return [
        choice_label(ConsentEvent.Channel, event.channel),
        _("By: %(who)s") % {"who": actor_label(event)},
    ]


def _reached(propagation: Propagation | None) -> list[str]:
    if propagation is None:
        return []
    counts = {
        "applied": propagation.applied,
        "total": propagation.total,
        "overtaken": propagation.superseded,
        "failed": propagation.failed,
    }
    said = [
        ngettext(
            "Applied to %(applied)d of %(total)d system.",
            "Applied to %(applied)d of %(total)d systems.",
            propagation.total,
        )
        % counts
    ]
    if propagation.superseded:
        said.append(
            ngettext(
                "A later change overtook it in %(overtaken)d system before it was sent.",
                "A later change overtook it in %(overtaken)d systems before it was sent.",
                propagation.superseded,
            )
            % counts
        )
    if propagation.failed:
        said.append(
            ngettext(
                "%(failed)d could not be reached yet.",
                "%(failed)d could not be reached yet.",
                propagation.failed,
            )
            % counts
        )
    return said


def export_row(
    event: ConsentEvent, staff: Mapping[UUID | None, str] | None = None
) -> dict[str, Any]:
    """Return the event's export fields; given staff emails by subject id, who acted too."""
    row = {
        "number": event.number,
        "time": event.created_at.isoformat(),
        "event": event.kind,
        "summary": event_summary(event),
        "before": event.before,
        "after": event.after,
        "channel": event.channel,
        "acted_by": event.actor_role,
        "policy_version": event.policy.version if event.policy else None,
        "shown_default": event.shown_default,
        "browser_opt_out_signal": event.gpc,
        "reason": event.reason,
        "reference": event.reference,
        "ip_prefix": event.ip_prefix,
        "user_agent": event.user_agent,
        "hash": event.hash,
    }
    if staff is not None:
        row["acted_by_email"] = staff.get(event.actor_subject_id)
    return row


def events_oldest_first(subject_id: UUID) -> Iterator[ConsentEvent]:
    events = ConsentEvent.objects.filter(subject_id=subject_id).select_related("policy")
    return events.order_by("number").iterator(chunk_size=1000)


class _Echo:
    def write(self, value: str) -> str:
        return value


def _safe_cell(value: object) -> object:
    # A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def history_export(
    subject_id: UUID, export: str, *, filename: str, staff: Mapping[UUID | None, str] | None = None
) -> HttpResponseBase:
    """Return the subject's whole history, oldest first, as a CSV or JSON download."""
    events = events_oldest_first(subject_id)
    headers = {"Content-Disposition": f'attachment; filename="{filename}.{export}"'}
    if export == "csv":
        return StreamingHttpResponse(
            _history_csv(events, staff), content_type="text/csv; charset=utf-8", headers=headers
        )
    body = {"subject_id": str(subject_id), "events": [export_row(e, staff) for e in events]}
    return JsonResponse(body, json_dumps_params={"indent": 2}, headers=headers)


def _history_csv(
    events: Iterable[ConsentEvent], staff: Mapping[UUID | None, str] | None = None
) -> Iterator[str]:
    """Yield the history as CSV lines, a header first."""
    fields = EXPORT_FIELDS if staff is None else SUPPORT_EXPORT_FIELDS
    writer = csv.writer(_Echo())
    yield writer.writerow(fields)
    for event in events:
        row = export_row(event, staff)
        yield writer.writerow([_safe_cell(row[field]) for field in fields])
