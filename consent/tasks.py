from celery import shared_task
from django.conf import settings

from accounts.models import User
from consent import audit, outbox, services
from consent.models import Reconciliation
from consent.reconcile import raise_if_failed, reconcile, reconcile_unqueue


@shared_task(acks_late=True, reject_on_worker_lost=True)
def deliver(sink: str) -> int:
    """Apply the due deliveries of one sink."""
    outbox.drain_started(sink)
    return outbox.outbox_drain(sink)


@shared_task(acks_late=True)
def sweep() -> list[str]:
    """Queue drains that were lost (broker down at commit, worker killed) and due retries."""
    return outbox.outbox_sweep()


@shared_task(acks_late=True, soft_time_limit=600, time_limit=900)
def expire_choices() -> int:
    """Expire choices made under older terms once new terms that ask again are in force."""
    return services.consent_expire_for_new_terms()


@shared_task(
    acks_late=True,
    soft_time_limit=settings.CONSENT_RECONCILE_TIME_LIMIT - 300,  # a batch begun near the end
    time_limit=settings.CONSENT_RECONCILE_TIME_LIMIT,
)
def reconcile_sinks() -> None:
    """Find and repair drift between every sink and the source of truth, within a time budget."""
    # The next part of each sink's sweep, in CONSENT_RECONCILE_BUDGET seconds.
    budget = settings.CONSENT_RECONCILE_BUDGET
    raise_if_failed(reconcile(repair=True, budget=budget, origin=Reconciliation.Origin.SWEEP))


@shared_task(
    acks_late=True,
    soft_time_limit=settings.CONSENT_RECONCILE_TIME_LIMIT - 300,
    time_limit=settings.CONSENT_RECONCILE_TIME_LIMIT,
)
def reconcile_requested(sink: str, repair: bool, requested_by_id: int | None = None) -> str:
    """Compare one sink whole with the source of truth, as an admin asked."""
    try:
        if requested_by_id and not User.objects.filter(pk=requested_by_id).exists():
            requested_by_id = None  # the account was deleted while the comparison waited
        report = reconcile(
            sink=sink,
            repair=repair,
            origin=Reconciliation.Origin.ADMIN,
            requested_by_id=requested_by_id,
        )
    finally:
        reconcile_unqueue(sink)
    raise_if_failed(report)
    return str(report[0])


@shared_task(acks_late=True, soft_time_limit=50, time_limit=55)
def audit_checkpoint() -> int | None:
    """Sign a checkpoint of the audit log and copy it outside the database."""
    checkpoint = audit.audit_checkpoint()
    return checkpoint.tree_size if checkpoint else None


@shared_task(
    acks_late=True,
    soft_time_limit=settings.CONSENT_HOURLY_TIME_LIMIT - 300,
    time_limit=settings.CONSENT_HOURLY_TIME_LIMIT,
)
def verify_audit() -> str:
    """Verify the whole audit log against its checkpoints, and keep what was found."""
    return audit.audit_verify_and_record().verdict


@shared_task(
    acks_late=True,
    soft_time_limit=settings.CONSENT_HOURLY_TIME_LIMIT - 300,
    time_limit=settings.CONSENT_HOURLY_TIME_LIMIT,
)
def prune_outbox() -> int:
    """Delete the deliveries whose record is no longer needed."""
    return outbox.outbox_prune()
