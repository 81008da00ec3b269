from django.contrib import admin
from django.http import HttpRequest

from consent.models import ConsentEvent, ConsentPolicy


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
