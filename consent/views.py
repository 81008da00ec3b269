"""The end user's pages: the product home with the first-run pop-up, privacy settings, history."""

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import reswap, retarget
from django_htmx.middleware import HtmxDetails

from accounts.models import User
from consent.exceptions import (
    ChoiceMade,
    ConsentError,
    ConsentThrottled,
    NoPolicy,
    NotAsked,
    TermsChanged,
)
from consent.forms import ChoiceForm, DeferForm, HistoryQueryForm, PolicyForm
from consent.history import history_export, history_lines
from consent.metadata import RequestMeta
from consent.metrics import POPUPS_SERVED
from consent.models import ConsentEvent, ConsentPolicy, TrainingConsent
from consent.receipts import receipt_for
from consent.selectors import (
    Prompt,
    Propagation,
    consent_after,
    consent_and_policy,
    consent_for,
    consent_standing,
    decision_of,
    history_page,
    last_decision,
    latest_decision,
    needs_choice,
    policies_published,
    policy_current,
    policy_in_force,
    prompt_for,
    propagation_just_committed,
    propagation_of_recent,
    propagation_summaries,
    retention_days_now,
    runs_while_allowed,
    shown_default,
)
from consent.services import (
    Channel,
    consent_change,
    consent_defer,
    gpc_record_signal,
    notice_record_served,
)
from consent.wording import choice_sentence, kept_sentence, reach_sentence, runs_sentence


class UserRequest(HttpRequest):
    user: User
    htmx: HtmxDetails


def _refusal(error: ConsentError) -> str:
    """Say why the service refused a well-formed post."""
    if isinstance(error, TermsChanged):
        return _("The terms changed since this page was loaded. Read them again and choose.")
    if isinstance(error, NotAsked):  # moved to a business plan while the page was open
        return _(
            "Nothing was saved: your plan's terms now exclude your chats and coding sessions "
            "from training, so there is nothing to choose."
        )
    return _("Your choice was not saved. Reload the page and try again.")


def _retry_after(response: HttpResponse, throttled: ConsentThrottled) -> HttpResponse:
    response["Retry-After"] = str(throttled.retry_after)
    return response


def _too_many(throttled: ConsentThrottled) -> str:
    seconds = throttled.retry_after
    return ngettext(
        "You changed this setting many times in a short while, so this change was not saved. "
        "Try again in %(seconds)d second.",
        "You changed this setting many times in a short while, so this change was not saved. "
        "Try again in %(seconds)d seconds.",
        seconds,
    ) % {"seconds": seconds}


# Home and the first-run pop-up


@require_GET
@login_required
def home(request: UserRequest) -> HttpResponse:
    prompt = prompt_for(request.user)
    if prompt.show:
        POPUPS_SERVED.inc()
        _record_notice_shown(request, channel=Channel.POPUP)
    return _render_home(request, prompt)


def _record_notice_shown(request: UserRequest, *, channel: str) -> None:
    """Record, once per terms, that they were shown and the signal the browser sent."""
    # The proof of display a later choice is tied to.
    meta = RequestMeta.from_request(request)
    if meta.gpc:
        gpc_record_signal(user=request.user, meta=meta)
    notice_record_served(user=request.user, channel=channel, meta=meta)


def _render_home(
    request: UserRequest,
    prompt: Prompt,
    *,
    form: PolicyForm | None = None,
    error: str | None = None,
    status: int = 200,
) -> HttpResponse:
    gpc = RequestMeta.from_request(request).gpc
    last = last_decision(request.user) if prompt.show else None
    context = {
        "prompt": prompt,
        "gpc": gpc,
        "last_decision": last,
        "shown_default": shown_default(prompt.policy, gpc=gpc, last=last),
        "form": form,
        "error": error,
    }
    return render(request, "consent/home.html", context, status=status)


@require_POST
@login_required
def popup_decide(request: UserRequest) -> HttpResponse:
    user = request.user
    form = ChoiceForm(request.POST)
    if form.is_valid():
        try:
            event = _decide(request, form, channel=Channel.POPUP)
        except ConsentThrottled as throttled:
            response = _render_home(
                request, prompt_for(user), error=_too_many(throttled), status=429
            )
            return _retry_after(response, throttled)
        except ChoiceMade:  # a pop-up left open while the user chose in another tab
            messages.info(request, _chosen_elsewhere_message())
            return redirect("home")
        except ConsentError as error:
            form.add_error(None, _refusal(error))
        else:
            changed = event is not None
            messages.success(request, _saved_message(allowed=form.allowed_value, changed=changed))
            return redirect("home")
    return _render_home(request, prompt_for(user), form=form, status=400)


def _decide(request: UserRequest, form: ChoiceForm, *, channel: str) -> ConsentEvent | None:
    """Record a choice asked for as the pop-up asks it, with the default its switch started at."""
    meta = RequestMeta.from_request(request)
    # The pop-up always asked (the service refuses it once a choice stands); a settings page
    # loaded before a choice was made elsewhere asks nothing now, nor shows a default.
    asked = channel == Channel.POPUP or needs_choice(*consent_and_policy(request.user))
    return consent_change(
        user=request.user,
        allowed=form.allowed_value,
        channel=channel,
        policy_version=form.cleaned_data["policy_version"],
        shown_default=(
            shown_default(policy_current(), gpc=meta.gpc, last=last_decision(request.user))
            if asked
            else None
        ),
        meta=meta,
        rate=settings.CONSENT_TOGGLE_RATE,
    )


@require_POST
@login_required
def popup_defer(request: UserRequest) -> HttpResponse:
    user = request.user
    form = DeferForm(request.POST)
    if form.is_valid():
        policy = policy_current()
        try:
            consent_defer(
                user=user,
                policy_version=form.cleaned_data["policy_version"],
                meta=RequestMeta.from_request(request),
            )
        except (TermsChanged, NoPolicy, NotAsked) as error:
            form.add_error(None, _refusal(error))
        except ConsentError:  # the deadline passed, or a choice was made meanwhile
            form.add_error(None, _("“Not now” is no longer possible: please choose."))
        else:
            assert policy is not None  # the service defers under published terms only
            messages.info(request, _deferred_message(policy))
            return redirect("home")
    return _render_home(request, prompt_for(user), form=form, status=400)


def _chosen_elsewhere_message() -> str:
    return _(
        "Nothing was changed: you had already chosen, in another tab or on another device. "
        "Your choice stands, and you can change it any time in your privacy settings."
    )


def _deferred_message(policy: ConsentPolicy) -> str:
    return _(
        "Not decided yet: we will ask again later, until %(date)s at the latest. Until you "
        "choose, your chats and coding sessions are not used for training."
    ) % {"date": date_format(localtime(policy.decision_deadline), "j F Y")}


# Privacy settings


@require_http_methods(["GET", "POST"])
@login_required
def privacy_settings(request: UserRequest) -> HttpResponse:
    if request.method == "GET":
        return _render_settings(request, showing=True)
    user = request.user
    form = ChoiceForm(request.POST)
    if not form.is_valid():
        return _render_settings(request, form=form, status=400)
    try:
        event = consent_change(
            user=user,
            allowed=form.allowed_value,
            channel=Channel.SETTINGS,
            policy_version=form.cleaned_data["policy_version"],
            meta=RequestMeta.from_request(request),
            rate=settings.CONSENT_TOGGLE_RATE,
        )
    except ConsentThrottled as throttled:
        response = _render_settings(request, error=_too_many(throttled), status=429)
        return _retry_after(response, throttled)
    except ConsentError as error:
        return _render_settings(request, error=_refusal(error), status=400)
    saved = _saved_message(allowed=form.allowed_value, changed=event is not None)
    if not request.htmx:
        messages.success(request, saved)
        return redirect("privacy_settings")
    if event is None:
        return _render_settings(request, saved=saved)
    # The switch already shows the new value: only the facts below it change.
    consent = consent_after(event, user)
    context = {
        **_facts(consent, event.policy, propagation_just_committed()),
        "consent": consent,
        "saved": saved,
    }
    return render(request, "consent/privacy.html#choice", context)


@require_POST
@login_required
def privacy_choose(request: UserRequest) -> HttpResponse:
    """Record the choice the settings page asks for, as the pop-up asks it, while none stands."""
    form = ChoiceForm(request.POST)
    if not form.is_valid():
        return _render_settings(request, form=form, status=400)
    try:
        event = _decide(request, form, channel=Channel.SETTINGS)
    except ConsentThrottled as throttled:
        return _retry_after(
            _render_settings(request, error=_too_many(throttled), status=429), throttled
        )
    except ConsentError as error:
        return _render_settings(request, error=_refusal(error), status=400)
    changed = event is not None
    messages.success(request, _saved_message(allowed=form.allowed_value, changed=changed))
    return redirect("privacy_settings")


@require_GET
@login_required
def privacy_runs(request: UserRequest) -> HttpResponse:
    """Answer htmx's request, after a change, for what training runs have selected."""
    consent = consent_for(request.user)
    context = {"runs_sentence": _runs_sentence(request.user, consent)}
    return render(request, "consent/privacy.html#runs", context)


def _runs_sentence(user: User, consent: TrainingConsent) -> str:
    return runs_sentence(runs_while_allowed(user), allowed=consent.allowed)


@require_GET
@login_required
def privacy_propagation(request: UserRequest) -> HttpResponse:
    """Answer htmx's poll of how far the latest change has reached."""
    propagation = propagation_of_recent(latest_decision(request.user))
    context = {
        "propagation": propagation,
        "reach_sentence": reach_sentence(propagation),
    }
    return render(request, "consent/privacy.html#propagation", context)


def _facts(
    consent: TrainingConsent,
    policy: ConsentPolicy | None,
    propagation: Propagation | None,
    *,
    choice_ended: bool = False,
    decided_by: str | None = ConsentEvent.Role.USER,
) -> dict[str, Any]:
    """Return the sentences under the switch, and what the template decides on."""
    retention_days = retention_days_now(consent, policy)
    return {
        "choice_sentence": choice_sentence(consent, choice_ended=choice_ended, by=decided_by),
        "kept_sentence": "" if retention_days is None else kept_sentence(consent, retention_days),
        "propagation": propagation,
        "reach_sentence": reach_sentence(propagation),
    }


def _saved_message(*, allowed: bool, changed: bool) -> str:
    if not changed:
        return _("No change: the setting already was as you chose.")
    if allowed:
        return _("Saved: new and resumed chats and coding sessions may be used for training.")
    return _(
        "Saved: no training run that selects data from now on will use your chats and coding "
        "sessions, those already stored included."
    )


def _render_settings(
    request: UserRequest,
    *,
    form: ChoiceForm | None = None,
    error: str | None = None,
    saved: str = "",
    status: int = 200,
    showing: bool = False,
) -> HttpResponse:
    """Render the page, or for htmx its whole "training" section in place of the old one."""
    consent, policy = consent_and_policy(request.user)
    # No choice stands under the current terms: the page asks for one as the pop-up does, and
    # shown afresh (not a form's errors again), records so.
    choosing = needs_choice(consent, policy)
    if choosing and showing:
        _record_notice_shown(request, channel=Channel.SETTINGS)
    # What it says stands now; whether it asks, as the pop-up and the services decide it.
    standing = consent_standing(consent)
    latest = latest_decision(request.user)
    last = None if latest is None else latest.allows_training
    choice_ended = standing.decided_at is None and latest is not None
    gpc = RequestMeta.from_request(request).gpc
    context: dict[str, Any] = {
        **_facts(
            standing,
            policy,
            propagation_of_recent(latest),
            choice_ended=choice_ended,
            decided_by=None if latest is None else latest.actor_role,
        ),
        "policy": policy,
        "consent": standing,
        "asks_again": consent.policy is not None and needs_choice(consent, policy),
        "choosing": choosing,
        "last_decision": last,
        "shown_default": shown_default(policy, gpc=gpc, last=last),
        "runs_sentence": _runs_sentence(request.user, standing),
        "gpc": gpc,
        "form": form,
        "error": error,
        "saved": saved,
    }
    if not request.htmx:
        return render(request, "consent/privacy.html", context, status=status)
    response = render(request, "consent/privacy.html#training", context, status=status)
    return reswap(retarget(response, "#training"), "outerHTML")


# History and receipts


@require_GET
@login_required
def privacy_history(request: UserRequest) -> HttpResponseBase:
    subject_id = request.user.subject_id
    query = HistoryQueryForm(request.GET)
    if not query.is_valid():
        return HttpResponseBadRequest(_("Unknown page or export format."))
    export, before = query.cleaned_data["format"], query.cleaned_data["before"]
    if export:
        return history_export(subject_id, export, filename="consent-history")
    page = history_page(subject_id, older_than=before)
    rows = history_lines(page.events, propagation_summaries(event.pk for event in page.events))
    template = "consent/history.html#events" if request.htmx else "consent/history.html"
    return render(request, template, {"page": page, "rows": rows, "before": before})


@require_GET
@login_required
def privacy_receipt(request: UserRequest, number: int) -> HttpResponse:
    event = decision_of(request.user.subject_id, number)
    if event is None:
        raise Http404
    settings_url = request.build_absolute_uri(reverse("privacy_settings"))
    return JsonResponse(
        receipt_for(event, settings_url=settings_url),
        json_dumps_params={"indent": 2},
        headers={"Content-Disposition": f'attachment; filename="consent-receipt-{number}.json"'},
    )


@require_GET
def help_privacy(request: HttpRequest) -> HttpResponse:
    published = policies_published()
    context = {
        "policy": published[0] if published else None,
        "in_force": policy_in_force(published),
        "published": published,
    }
    return render(request, "consent/help.html", context)


@require_GET
def help_terms(request: HttpRequest, version: int) -> HttpResponse:
    """Show the terms of one published version, as users were shown them: what they agreed to."""
    published = policies_published()
    policy = next((policy for policy in published if policy.version == version), None)
    if policy is None:
        raise Http404
    context = {"policy": policy, "current": published[0], "in_force": policy_in_force(published)}
    return render(request, "consent/terms.html", context)
