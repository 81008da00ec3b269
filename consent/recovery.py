"""Recovery after the app's database was restored from an older backup.

The downstream stores then hold newer numbers than the database, for the changes made after the
backup, and the audit's checkpoints outside the database count events it no longer has. What
the stores hold is the newest known state of each such user: recovery takes it back as one event
per user (consent_restore), numbered past every number sent, so that their next change reaches
every store again. A user whose newest state the stores do not agree on is made undecided (not
eligible anywhere) until they choose again. A store holding someone the database never knew
(who signed up after the backup) is told to drop them. A signed statement of the restore lets
verify_audit tell it from tampering from then on.
"""

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
                    known.allowed, known.deleted = None, False
    users = set(
        User.objects.filter(subject_id__in=list(newest)).values_list("subject_id", flat=True)
    )
    unknown = [s for s in newest if s not in users and s not in heads]
    ahead = [a for s, a in newest.items() if s in users]
    return RecoveryPlan(audit_verify(), sorted(ahead, key=lambda a: str(a.subject_id)), unknown)


def recover(plan: RecoveryPlan) -> list[Drift]:
    """Carry the plan out: one restoring event per user ahead, the restore's signed statement,
    and every store repaired (the unknown dropped); return what reconcile then found."""
    policies = {p.version: p for p in ConsentPolicy.objects.filter(published_at__isnull=False)}
    users = User.objects.in_bulk([a.subject_id for a in plan.ahead], field_name="subject_id")
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
    if plan.audit.verdict == AuditVerification.Verdict.RESTORED and plan.audit.checkpoint:
        audit_restore_record(
            kept=plan.audit.kept,
            lost_through=plan.audit.checkpoint.size,
            detail=(
                f"{len(plan.ahead)} users' newest states taken back from the stores; "
                f"{len(plan.unknown)} subjects unknown to the database dropped from them"
            ),
        )
    return reconcile(repair=True, origin=Reconciliation.Origin.RESTORE)
