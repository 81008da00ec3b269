"""Recovery after the app's database was restored from an older backup."""

from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from django.db.models import Max

from accounts.models import User
from consent.audit import AuditReport, audit_restore_record, audit_verify
from consent.models import AuditVerification, ConsentEvent, ConsentPolicy, Reconciliation
from consent.reconcile import Drift, reconcile
from consent.services import consent_restore
from consent.sinks import configured_sinks
from consent.sinks.base import all_entries


@dataclass
class Ahead:
    """A subject some store knows newer than the database does."""

    subject_id: UUID
    held: int  # the number of the database's newest event for them
    newest: int  # the highest number a store holds
    allowed: bool | None  # None: the stores holding that number disagree
    deleted: bool
    plan: str
    policy_version: int | None
    changed_at: datetime | None
    stores: list[str] = field(default_factory=list)

    def detail(self) -> str:
        lost = (
            f"event {self.newest} was lost"
            if self.newest == self.held + 1
            else f"events {self.held + 1} to {self.newest} were lost"
        )
        state = (
            "deleted"
            if self.deleted
            else {True: "allowed", False: "declined", None: "not agreed on"}[self.allowed]
        )
        return (
            f"The database was restored from a backup: {lost}. The newest state known downstream "
            f"(event {self.newest}, {state}, held by {', '.join(self.stores)}) is re-established."
        )


@dataclass
class RecoveryPlan:
    audit: AuditReport
    ahead: list[Ahead]
    unknown: list[UUID]  # held downstream, never known to the database


def recovery_plan() -> RecoveryPlan:
    """Find what the stores and the checkpoints outside the database know that it lost."""
    # The stores hold newer numbers than the database for the changes made after the backup,
    # and the checkpoints outside it count events it no longer has.
    heads = dict(
        ConsentEvent.objects.values("subject_id")
        .annotate(head=Max("number"))
        .values_list("subject_id", "head")
    )
    newest: dict[UUID, Ahead] = {}
    for name, sink in configured_sinks().items():
        if not sink.readable:
            continue
        for subject_id, entry in all_entries(sink).items():
            held = heads.get(subject_id, 0)
            if entry.version <= held:
                continue
            known = newest.get(subject_id)
            if known is None or entry.version > known.newest:
                newest[subject_id] = Ahead(
                    subject_id,
                    held,
                    entry.version,
                    entry.allowed,
                    entry.deleted,
                    entry.plan,
                    entry.policy_version,
                    entry.changed_at,
                    [name],
                )
            elif entry.version == known.newest:
                known.stores.append(name)
                if (entry.allowed, entry.deleted) != (known.allowed, known.deleted):
                    # Undecided, so eligible nowhere, until the user chooses again.
                    known.allowed, known.deleted = None, False
    users = set(
        User.objects.filter(subject_id__in=list(newest)).values_list("subject_id", flat=True)
    )
    # Signed up after the backup: the stores are told to drop them.
    unknown = [s for s in newest if s not in users and s not in heads]
    ahead = [a for s, a in newest.items() if s in users]
    return RecoveryPlan(audit_verify(), sorted(ahead, key=lambda a: str(a.subject_id)), unknown)


def recover(plan: RecoveryPlan) -> list[Drift]:
    """Carry the plan out and repair every store; return what reconcile then found."""
    policies = {p.version: p for p in ConsentPolicy.objects.filter(published_at__isnull=False)}
    users = User.objects.in_bulk([a.subject_id for a in plan.ahead], field_name="subject_id")
    # Each user's newest state held downstream comes back as one event, numbered past every
    # number sent, so that their next change reaches every store again.
    for ahead in plan.ahead:
        consent_restore(
            user=users[ahead.subject_id],
            number=ahead.newest + 1,
            allowed=ahead.allowed,
            deleted=ahead.deleted,
            plan=ahead.plan,
            policy=policies.get(ahead.policy_version) if ahead.policy_version else None,
            decided_at=ahead.changed_at,
            detail=ahead.detail(),
        )
    # The signed statement lets verify_audit tell the restore from tampering from then on.
    if plan.audit.verdict == AuditVerification.Verdict.RESTORED and plan.audit.checkpoint:
        audit_restore_record(
            kept=plan.audit.kept,
            lost_through=plan.audit.checkpoint.size,
            detail=(
                f"{len(plan.ahead)} users' newest states taken back from the stores; "
                f"{len(plan.unknown)} subjects unknown to the database dropped from them"
            ),
        )
    return reconcile(repair=True, origin=Reconciliation.Origin.RESTORE)  # drops the unknown
