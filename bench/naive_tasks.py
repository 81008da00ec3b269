"""The design most Django projects would write, as a baseline: one task per change and sink."""

from celery import shared_task

from consent.changes import change_for
from consent.models import ConsentEvent
from consent.sinks import sink_named


@shared_task
def apply_one(sink: str, event_id: int) -> None:
    event = ConsentEvent.objects.select_related("policy").get(pk=event_id)
    sink_named(sink).apply([change_for(event)])
