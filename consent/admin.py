import re
from typing import Any
from uuid import UUID

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.timezone import localtime
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_POST

from accounts.models import User
from config.admin import ModelAdmin, ReadOnly, ReadOnlyAdmin
from consent import policies
from consent.exceptions import ConsentError
from consent.models import (
    ConsentEvent,
    ConsentPolicy,
    ConsentState,
    Delivery,
    PolicyEvent,
    Reconciliation,
    TrainingRun,
)
from consent.outbox import delivery_retry, delivery_retry_now
from consent.reconcile import ReconcileFailed, reconcile_queue
from consent.selectors import policy_current, sink_overview

# Policies: a draft is edited freely, publishing fixes it, and its deadline only moves later.


class DraftForm(forms.ModelForm):
    class Meta:
        model = ConsentPolicy
        fields = [
            "title",
            "text",
            "effective_at",
            "decision_deadline",
            "default_allowed",
            "retention_days_allowed",
            "retention_days_declined",
            "defer_for",
            "requires_new_choice",
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        # The terms' bounds are the model's (its validators and constraints): checked after this.
        waiting = ConsentPolicy.objects.filter(published_at__isnull=True).first()
        if self.instance.pk is None and waiting is not None:
            raise forms.ValidationError(
                _("Draft v%(version)s is waiting: publish or delete it first."),
                params={"version": waiting.version},
            )
        return cleaned


class DeadlineForm(forms.Form):
    decision_deadline = forms.DateTimeField(
        label=_("New decision deadline (UTC)"),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    reason = forms.CharField(
        label=_("Reason"),
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Recorded with the change, for the audit."),
    )


class PolicyEventInline(ReadOnly, admin.StackedInline):  # a table would have empty headers
    model = PolicyEvent
    fields = ("created_at", "kind", "actor", "deadline_before", "deadline_after", "reason")
    readonly_fields = fields
    extra = 0


@admin.register(ConsentPolicy)
class ConsentPolicyAdmin(ModelAdmin):
    form = DraftForm
    list_display = ["version", "title", "status", "effective_at", "decision_deadline"]
    readonly_fields = ["version", "status", "content_hash", "published_at", "created_at"]
    inlines = [PolicyEventInline]

    @admin.display(description=_("status"))
    def status(self, obj: ConsentPolicy) -> str:
        if not obj.is_published:
            return str(_("Draft"))
        current = policy_current()
        if current is not None and current.pk == obj.pk:
            return str(_("Published, current"))
        return str(_("Published"))

    # A published policy is shown read-only: what users saw stays as it was.
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None and obj.is_published:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is not None and not obj.is_published and super().has_delete_permission(request)

    def save_model(self, request: HttpRequest, obj: ConsentPolicy, form: Any, change: bool):
        policies.policy_draft_save(policy=obj)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path(
                "<path:object_id>/publish/",
                view(self.publish_view),
                name="consent_consentpolicy_publish",
            ),
            path(
                "<path:object_id>/extend-deadline/",
                view(self.extend_deadline_view),
                name="consent_consentpolicy_extend_deadline",
            ),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        policy = self.get_object(request, object_id)
        may_act = super().has_change_permission(request)
        extra_context = {
            **(extra_context or {}),
            "can_publish": policy is not None and not policy.is_published and may_act,
            "can_extend": policy is not None and policy.is_published and may_act,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def _policy_for_action(self, request: HttpRequest, object_id: str) -> ConsentPolicy:
        if not super().has_change_permission(request):
            raise PermissionDenied
        policy = self.get_object(request, object_id)
        if policy is None:
            raise Http404
        return policy

    def _change_url(self, policy: ConsentPolicy) -> str:
        return reverse("admin:consent_consentpolicy_change", args=[policy.pk])

    def publish_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        policy = self._policy_for_action(request, object_id)
        if request.method == "POST":
            try:
                published = policies.policy_draft_publish(policy=policy, actor=request.user)  # type: ignore[arg-type]
            except ConsentError as error:
                self.message_user(request, str(error), messages.ERROR)
            else:
                self.message_user(
                    request,
                    _(
                        "Version %(version)s is published; its text and hash are fixed. It is "
                        "in force from %(when)s."
                    )
                    % {
                        "version": published.version,
                        "when": date_format(localtime(published.in_force_from), "j M Y, H:i:s e"),
                    },
                    messages.SUCCESS,
                )
            return HttpResponseRedirect(self._change_url(policy))
        decided = ConsentState.ALLOWED, ConsentState.DECLINED
        newest = policy_current()  # the terms users are asked about now
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": policy,
            "title": _("Publish version %(version)s?") % {"version": policy.version},
            "content_hash": policies.policy_content_hash(
                title=policy.title.strip(), text=policy.text.strip()
            ),
            "asked_again": User.objects.filter(
                plan__in=User.CONSUMER_PLANS, training_consent__state__in=decided
            ).count(),
            "deadline_passed": policy.deadline_passed,
            "newest": newest,
            "deadline_earlier": newest is not None
            and policy.decision_deadline < newest.decision_deadline,
        }
        return TemplateResponse(request, "admin/consent/consentpolicy/publish.html", context)

    def extend_deadline_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        policy = self._policy_for_action(request, object_id)
        if not policy.is_published:
            return HttpResponseRedirect(self._change_url(policy))
        form = DeadlineForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                policies.policy_deadline_extend(
                    policy=policy,
                    decision_deadline=form.cleaned_data["decision_deadline"],
                    actor=request.user,  # type: ignore[arg-type]
                    reason=form.cleaned_data["reason"],
                )
            except ConsentError as error:
                form.add_error(None, str(error))
            else:
                self.message_user(request, _("The deadline was extended."), messages.SUCCESS)
                return HttpResponseRedirect(self._change_url(policy))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": policy,
            "title": _("Extend the deadline of version %(version)s") % {"version": policy.version},
            "form": form,
        }
        return TemplateResponse(
            request, "admin/consent/consentpolicy/extend_deadline.html", context
        )


# The audit log: read by admins, changed by nobody.


HASH = re.compile(r"[0-9a-fA-F]{64}")


@admin.register(ConsentEvent)
class ConsentEventAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "subject_id",
        "number",
        "kind",
        "before",
        "after",
        "channel",
        "actor_role",
        "reference",
    ]
    list_filter = ["kind", "channel", "actor_role", "plan"]
    search_fields = ["subject_id", "actor_subject_id", "reference", "hash"]  # get_search_results
    search_help_text = _(
        "A subject id (the events of that user, and those they made as staff), a ticket "
        "reference, or an event's hash; exactly."
    )
    date_hierarchy = "created_at"
    show_full_result_count = False
    ordering = ["-id"]  # newest written first, as a log is read; the model's is by subject

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ConsentEvent], search_term: str
    ) -> tuple[QuerySet[ConsentEvent], bool]:
        """Match the term exactly, as an index can."""
        # Django's "=" search compares the upper-cased text of each column, which reads every
        # row of the log.
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            subject = UUID(term)
            match = Q(subject_id=subject) | Q(actor_subject_id=subject)
        except ValueError:
            match = Q(reference=term)
            if HASH.fullmatch(term):  # this one reads the table: hashes have no index
                match |= Q(hash=term.lower())
        return queryset.filter(match), False


# Deliveries to downstream stores: watch them, retry them, reconcile a sink.


class FailingFilter(admin.SimpleListFilter):
    title = _("attempts")
    parameter_name = "failing"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", str(_("Failing (pending after a failed attempt)")))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> QuerySet[Delivery]:
        if self.value() == "yes":
            return queryset.filter(state=Delivery.State.PENDING, attempts__gt=0)
        return queryset


def _sink_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in settings.CONSENT_SINKS]


class ReconcileForm(forms.Form):
    sink = forms.ChoiceField(label=_("Sink"), choices=_sink_choices)
    # After its checkbox, so without the colon a label before its field takes.
    repair = forms.BooleanField(label=_("Repair the drift found"), required=False, label_suffix="")


@admin.register(Delivery)
class DeliveryAdmin(ModelAdmin):
    list_display = [
        "id",
        "sink",
        "subject_id",
        "event_number",
        "state",
        "attempts",
        "next_attempt_at",
        "applied_at",
        "short_error",
    ]
    list_filter = ["sink", "state", FailingFilter]
    search_fields = ["subject_id"]  # get_search_results
    search_help_text = _("A subject id: that user's deliveries in every sink; exactly.")
    readonly_fields = [f.name for f in Delivery._meta.fields]
    actions = ["retry_dead", "retry_failing"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Delivery], search_term: str
    ) -> tuple[QuerySet[Delivery], bool]:
        """Find a subject's deliveries through their events, by the exact subject id."""
        # Django's "=" search compares the upper-cased text of the column, which no index serves.
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            subject = UUID(term)
        except ValueError:
            return queryset.none(), False
        return queryset.filter(event__in=ConsentEvent.objects.filter(subject_id=subject)), False

    @admin.display(description=_("last error"))
    def short_error(self, obj: Delivery) -> str:
        return obj.last_error[:80]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # Change permission is there for the retry actions; a delivery itself is never edited.
        no_save = {"show_save": False, "show_save_and_continue": False}
        return super().change_view(
            request, object_id, form_url, {**(extra_context or {}), **no_save}
        )

    @admin.action(description=_("Retry the selected dead deliveries"), permissions=["change"])
    def retry_dead(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        revived = delivery_retry(queryset)
        self.message_user(
            request,
            ngettext("%d delivery queued again.", "%d deliveries queued again.", revived) % revived,
            messages.SUCCESS,
        )

    @admin.action(
        description=_("Retry the selected failing deliveries now"), permissions=["change"]
    )
    def retry_failing(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        hurried = delivery_retry_now(queryset)
        self.message_user(
            request,
            ngettext(
                "%d failing delivery queued now.", "%d failing deliveries queued now.", hurried
            )
            % hurried,
            messages.SUCCESS,
        )

    def get_urls(self) -> list[URLPattern]:
        reconcile_view = require_POST(self.admin_site.admin_view(self.reconcile_view))
        return [
            path("reconcile/", reconcile_view, name="consent_delivery_reconcile"),
            *super().get_urls(),
        ]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = {
            **(extra_context or {}),
            "sinks": sink_overview(),
            "now": timezone.now(),
            "reconcile_form": ReconcileForm(),
            "can_reconcile": self.has_change_permission(request),
            "can_see_reconciliations": request.user.has_perm("consent.view_reconciliation"),
        }
        return super().changelist_view(request, extra_context)

    def reconcile_view(self, request: HttpRequest) -> HttpResponse:
        """Queue a whole comparison of one sink for a worker; its findings appear in the table."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        form = ReconcileForm(request.POST)
        if not form.is_valid():
            self.message_user(request, _("Choose a configured sink."), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:consent_delivery_changelist"))
        sink, repair = form.cleaned_data["sink"], form.cleaned_data["repair"]
        names = {"sink": sink, "command": f"manage.py reconcile --sink {sink}"}
        if repair:
            names["command"] += " --repair"
        try:
            queued = reconcile_queue(sink=sink, repair=repair, requested_by_id=request.user.pk)
        except ReconcileFailed:
            message = _(
                "The task broker did not take the comparison of %(sink)s. Try again in a moment, "
                "or run “%(command)s” on a worker machine."
            )
            self.message_user(request, message % names, messages.ERROR)
        else:
            message = (
                _("A comparison of %(sink)s with the audit log is queued.")
                if queued
                else _("A comparison of %(sink)s is already queued or under way.")
            )
            later = _("Its findings appear under “Last reconciled” once it has finished.")
            self.message_user(
                request,
                f"{message % names} {later}",
                messages.SUCCESS if queued else messages.WARNING,
            )
        return HttpResponseRedirect(reverse("admin:consent_delivery_changelist"))


@admin.register(Reconciliation)
class ReconciliationAdmin(ReadOnlyAdmin):
    list_display = [
        "finished_at",
        "sink",
        "missing",
        "stale",
        "extra",
        "in_flight",
        "repaired",
        "origin",
        "requested_by",
        "short_error",
    ]
    list_filter = ["sink", "origin", "repaired"]
    list_select_related = ["requested_by"]
    date_hierarchy = "finished_at"
    readonly_fields = [f.name for f in Reconciliation._meta.fields]
    show_full_result_count = False

    @admin.display(description=_("error"))
    def short_error(self, obj: Reconciliation) -> str:
        return obj.error[:80]


# Training runs: registered by pipelines through the API; read here, never changed.


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "as_of",
        "subjects",
        "intervals",
        "withheld",
        "registered_by",
        "created_at",
    ]
    search_fields = ["name", "=id"]
    date_hierarchy = "as_of"
    readonly_fields = ["id", "name", "as_of", "registered_by", "created_at", "snapshot"]

    @admin.display(description=_("subjects eligible"))
    def subjects(self, obj: TrainingRun) -> int:
        return int(obj.snapshot.get("subjects", 0))

    @admin.display(description=_("intervals"))
    def intervals(self, obj: TrainingRun) -> int:
        return obj.rows

    @admin.display(description=_("subjects withheld (changes not yet applied)"))
    def withheld(self, obj: TrainingRun) -> int:
        return int(obj.snapshot.get("withheld_subjects", 0))
