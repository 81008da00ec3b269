from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from consent.models import ConsentEvent, ConsentPolicy, Delivery
from consent.outbox import delivery_retry


@admin.register(ConsentPolicy)
class ConsentPolicyAdmin(admin.ModelAdmin):
    list_display = ["version", "title", "effective_at", "decision_deadline", "published_at"]
    readonly_fields = ["content_hash", "published_at", "created_at"]

    # Published policies are fixed; publishing goes through consent.services.policy_publish.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ConsentEvent)
class ConsentEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "subject_id", "number", "kind", "before", "after", "channel"]
    list_filter = ["kind", "channel", "actor_role"]
    search_fields = ["=subject_id"]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "sink", "subject_id", "version", "state", "attempts", "applied_at"]
    list_filter = ["sink", "state"]
    search_fields = ["=subject_id"]
    readonly_fields = [f.name for f in Delivery._meta.fields]
    actions = ["retry_dead"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.action(description=_("Retry the selected dead deliveries"), permissions=["change"])
    def retry_dead(self, request: HttpRequest, queryset: QuerySet[Delivery]) -> None:
        revived = delivery_retry(queryset)
        self.message_user(
            request,
            ngettext("%d delivery queued again.", "%d deliveries queued again.", revived) % revived,
            messages.SUCCESS,
        )
