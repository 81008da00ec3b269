from celery import shared_task
from django.core.management import call_command


@shared_task(acks_late=True, soft_time_limit=600, time_limit=900)
def clear_sessions() -> None:
    """Delete the sessions past their expiry: Django keeps them until asked."""
    call_command("clearsessions")
