"""The support console: find a user, read their setting and history, record a change asked for."""

from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import Http404, HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods
from django.views.decorators.vary import vary_on_headers
from django_htmx.middleware import HtmxDetails

from accounts.models import User
from consent.audit import audit_first_break
from consent.exceptions import ConsentError, NoPolicy, NotAsked, TermsChanged
from consent.history import history_export
from consent.metadata import RequestMeta
from consent.models import SUPPORT_PERMISSION, AuditVerification, ConsentEvent
from consent.selectors import policy_current
from consent.services import Channel, consent_change
from support.forms import HistoryFilterForm, SearchForm, SupportChangeForm
from support.models import AccessRecord
from support.selectors import (
    account_deletion,
    event_rows,
    history_filtered,
    staff_who_acted,
    user_facts,
    user_search,
)
from support.services import access_record

Action = AccessRecord.Action

# Every view here is for the Support group alone (SUPPORT_PERMISSION): anyone else signed in gets
# a 403, anyone signed out goes to sign in. Every look at a user's page and every export leaves
# an AccessRecord.


class AgentRequest(HttpRequest):
    user: User
    htmx: HtmxDetails


def _swaps_a_part(request: AgentRequest) -> bool:
    # When htmx restores a page missing from its history cache, it needs the whole page.
    return bool(request.htmx) and not request.htmx.history_restore_request


@require_GET
@login_required
@permission_required(SUPPORT_PERMISSION, raise_exception=True)
@vary_on_headers("HX-Request")
def search(request: AgentRequest) -> HttpResponse:
    form = SearchForm(request.GET)
    valid = form.is_valid()
    query = form.cleaned_data["q"] if valid else ""
    page = user_search(query, after=form.cleaned_data["after"]) if valid else None
    template = "support/search.html#results" if _swaps_a_part(request) else "support/search.html"
    context = {"form": form, "query": query, "page": page}
    return render(request, template, context, status=200 if valid else 400)


@require_GET
@login_required
@permission_required(SUPPORT_PERMISSION, raise_exception=True)
@vary_on_headers("HX-Request")
def user_page(request: AgentRequest, user_id: int) -> HttpResponse:
    account = get_object_or_404(User, pk=user_id)
    context, status = _history(request, account.subject_id)
    context["account"] = account
    if _swaps_a_part(request):
        return _history_part(request, context, status)
    context["facts"] = user_facts(account)
    context["change_form"] = SupportChangeForm()
    return render(request, "support/user.html", context, status=status)


@require_GET
@login_required
@permission_required(SUPPORT_PERMISSION, raise_exception=True)
@vary_on_headers("HX-Request")
def subject_page(request: AgentRequest, subject_id: UUID) -> HttpResponse:
    """The history of a deleted account, which only its subject id names now."""
    deletion = _deletion_or_404(subject_id)
    context, status = _history(request, subject_id)
    if _swaps_a_part(request):
        return _history_part(request, context, status)
    context.update(subject_id=subject_id, deletion=deletion)
    return render(request, "support/subject.html", context, status=status)


def _deletion_or_404(subject_id: UUID) -> ConsentEvent:
    deletion = account_deletion(subject_id)
    if deletion is None:
        raise Http404("No deleted account has this subject id.")
    return deletion


def _history(request: AgentRequest, subject_id: UUID) -> tuple[dict[str, Any], int]:
    """Record the look, and return the filtered history asked for, and the status to answer."""
    filters = HistoryFilterForm(request.GET)
    valid = filters.is_valid()
    access_record(
        agent=request.user,
        subject_id=subject_id,
        action=Action.VIEWED,
        detail=request.GET.urlencode(),
        meta=RequestMeta.from_request(request),
    )
    page = (
        history_filtered(
            subject_id, filters=filters.filters, older_than=filters.cleaned_data["before"]
        )
        if valid
        else None
    )
    context = {
        "filters": filters,
        "page": page,
        "rows": event_rows(page.events) if page else [],
        "before": valid and filters.cleaned_data["before"],
        "delivery_retention_days": settings.CONSENT_DELIVERY_RETENTION_DAYS,
    }
    return context, 200 if valid else 400


def _history_part(request: AgentRequest, context: dict[str, Any], status: int) -> HttpResponse:
    """Return the part htmx swaps: older events in place, or the filtered history."""
    part = "events" if context["before"] else "history"
    return render(request, f"support/user.html#{part}", context, status=status)


@require_GET
@login_required
@permission_required(SUPPORT_PERMISSION, raise_exception=True)
@vary_on_headers("HX-Request")
def user_audit(request: AgentRequest, user_id: int) -> HttpResponse:
    account = get_object_or_404(User, pk=user_id)
    back = reverse("support:user", args=[account.pk])
    return _audit(request, account.subject_id, back_url=back, whose=account.email)


@require_GET
@login_required
@permission_required(SUPPORT_PERMISSION, raise_exception=True)
@vary_on_headers("HX-Request")
def subject_audit(request: AgentRequest, subject_id: UUID) -> HttpResponse:
    _deletion_or_404(subject_id)
    back = reverse("support:subject", args=[subject_id])
    return _audit(request, subject_id, back_url=back, whose=_("deleted account %s") % subject_id)


def _audit(request: AgentRequest, subject_id: UUID, *, back_url: str, whose: str) -> HttpResponse:
    """Show a user's chain and the whole log's last check."""
    if not _swaps_a_part(request):  # loaded into the user's page, the look is that page's
        access_record(
            agent=request.user,
            subject_id=subject_id,
            action=Action.VIEWED,
            detail="audit chain",
            meta=RequestMeta.from_request(request),
        )
    context = {
        "back_url": back_url,
        "whose": whose,
        "audit_break": audit_first_break(subject_id=subject_id),
        "verification": AuditVerification.objects.first(),
    }
    template = "support/audit.html#result" if _swaps_a_part(request) else "support/audit.html"
    return render(request, template, context)


@require_GET
@login_required
@permission_required(SUPPORT_PERMISSION, raise_exception=True)
def user_export(request: AgentRequest, user_id: int, export: str) -> HttpResponseBase:
    account = get_object_or_404(User, pk=user_id)
    return _export(request, account.subject_id, export, f"user-{account.pk}")


@require_GET
@login_required
@permission_required(SUPPORT_PERMISSION, raise_exception=True)
def subject_export(request: AgentRequest, subject_id: UUID, export: str) -> HttpResponseBase:
    _deletion_or_404(subject_id)
    return _export(request, subject_id, export, f"subject-{subject_id}")


def _export(request: AgentRequest, subject_id: UUID, export: str, whose: str) -> HttpResponseBase:
    access_record(
        agent=request.user,
        subject_id=subject_id,
        action=Action.EXPORTED_CSV if export == "csv" else Action.EXPORTED_JSON,
        meta=RequestMeta.from_request(request),
    )
    staff = staff_who_acted(subject_id)
    return history_export(subject_id, export, filename=f"consent-history-{whose}", staff=staff)


@require_http_methods(["GET", "POST"])
@login_required
@permission_required(SUPPORT_PERMISSION, raise_exception=True)
def user_change(request: AgentRequest, user_id: int) -> HttpResponse:
    """Record a change the user asked for, through the one writer, with the agent as actor."""
    account = get_object_or_404(User, pk=user_id)
    if request.method == "GET":  # a reload of the page a refused form left: the form is there
        return redirect("support:user", account.pk)
    form = SupportChangeForm(request.POST)
    if form.is_valid():
        try:
            event = consent_change(
                user=account,
                allowed=form.allowed_value,
                channel=Channel.SUPPORT,
                actor=request.user,
                policy_version=form.cleaned_data["policy_version"],
                reason=form.cleaned_data["reason"],
                reference=form.cleaned_data["reference"],
                meta=RequestMeta.from_request(request),
            )
        except ConsentError as error:
            form.add_error(None, _refusal(error))
        else:
            messages.success(request, _saved_message(allowed=form.allowed_value, event=event))
            return redirect("support:user", account.pk)
    context = {"account": account, "change_form": form, "policy": policy_current()}
    return render(request, "support/change.html", context, status=400)


def _refusal(error: ConsentError) -> str:
    if isinstance(error, NotAsked):
        return _(
            "Users on commercial plans are never asked and never trained on: "
            "there is nothing to change."
        )
    if isinstance(error, NoPolicy):
        return _("No policy has been published yet: there is nothing to change.")
    if isinstance(error, TermsChanged):
        return _("The terms changed since the page was loaded. Reload it and check again.")
    return _("The change was not saved. Reload the user's page and try again.")


def _saved_message(*, allowed: bool, event: ConsentEvent | None) -> str:
    if event is None:
        return _("No change: the setting already was as the user asked. Nothing was recorded.")
    if allowed:
        return _("Recorded: the user allows training, from now on.")
    return _("Recorded: the user declines training, from now on.")
