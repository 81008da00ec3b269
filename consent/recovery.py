"""Recovery after the app's database was restored from an older backup."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import Max

from accounts.models import User
from consent.audit import AuditReport, audit_restore_record, audit_verify, terms_copies
from consent.models import (
    AuditCheckpoint,
    AuditVerification,
    ConsentEvent,
    ConsentPolicy,
    Reconciliation,
)
from consent.policies import policy_restore
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
    policy_lost: bool = False  # the terms it was chosen under were published after the backup

    @property
    def established(self) -> bool:
        """Tell whether consent_restore takes the state back as it is, not as undecided."""
        # Its rule, on what the plan knows: agreed on, under terms the database still holds.
        if self.deleted:
            return True
        return self.allowed is not None and self.policy_version is not None and not self.policy_lost

    def detail(self) -> str:
        """Say what was lost and the one outcome consent_restore records for it."""
        lost = (
            f"event {self.newest} was lost"
            if self.newest == self.held + 1
            else f"events {self.held + 1} to {self.newest} were lost"
        )
        if self.deleted:
            state = "deleted"
        elif self.allowed is None:
            state = "not agreed on"
        elif self.allowed:
            state = "allowed"
        else:  # a store holds "not allowed" for the undecided too, under no terms
            state = "declined" if self.policy_version is not None else "not decided"
        known = f"The newest state known downstream (event {self.newest}, {state}, held by "
        known += ", ".join(self.stores) + ")"
        if self.established and self.allowed:
            outcome = (
                " is re-established from when it was made, or from the backup if that is later; "
                "between the backup and then, nothing counts as allowed."
            )
        elif self.established:
            outcome = " is re-established, from the backup on."
        elif self.allowed is None:
            outcome = ": the stores disagree, so not allowed until the user chooses again."
        elif self.policy_lost:
            outcome = (
                f" was chosen under terms (version {self.policy_version}) this database lost: "
                "not allowed until the user chooses again."
            )
        else:  # under no terms: undecided
            outcome = ": not allowed until the user chooses again."
        return f"The database was restored from a backup: {lost}. {known}{outcome}"


@dataclass
class RecoveryPlan:
    audit: AuditReport
    ahead: list[Ahead]
    unknown: list[UUID]  # held downstream, never known to the database
    policies_lost: list[int]  # terms versions the stores name, the database lacks, none copied
    terms_back: list[ConsentPolicy] = field(default_factory=list)  # from copies outside, unsaved
    terms_conflicting: list[int] = field(default_factory=list)  # copied, held with another text
    terms_problems: list[str] = field(default_factory=list)  # copies not read or not verified
    lost_after: datetime | None = None  # every change lost was made after this moment

    @property
    def needed(self) -> bool:
        """Tell whether there is anything to recover: a restore, or stores ahead of the database."""
        restored = self.audit.verdict == AuditVerification.Verdict.RESTORED
        return restored or bool(self.ahead or self.unknown or self.terms_back)


def _terms_back() -> tuple[list[ConsentPolicy], list[int], list[str]]:
    """Return the terms copies hold that the database lost, those it holds otherwise, problems."""
    # Lost: terms published after the backup, and deadlines extended after it. Otherwise: the
    # versions held with another text than their copy, or copied with two texts. Problems:
    # copies not read or verified.
    copies, doubts, problems = terms_copies()
    held = {p.version: p for p in ConsentPolicy.objects.filter(published_at__isnull=False)}
    back, conflicting = [], sorted(doubts)
    for version, copy in sorted(copies.items()):
        policy = held.get(version)
        if policy is None:
            back.append(copy)
        elif policy.content_hash != copy.content_hash:
            conflicting.append(version)
        elif copy.decision_deadline > policy.decision_deadline:
            back.append(copy)
    return back, sorted(conflicting), problems


def recovery_plan() -> RecoveryPlan:
    """Find what the stores and the checkpoints outside the database know that it lost."""
    # The stores hold newer numbers than the database for the changes made after the backup,
    # and the checkpoints outside it count events it no longer has.
    heads = dict(
        ConsentEvent.objects.values("subject_id")
        .annotate(head=Max("number"))
        .values_list("subject_id", "head")
    )
    terms_back, terms_conflicting, terms_problems = _terms_back()
    # Terms held with another text than their copy are not the ones chosen under: as if lost.
    published = set(
        ConsentPolicy.objects.filter(published_at__isnull=False).values_list("version", flat=True)
    ) | {copy.version for copy in terms_back}
    published -= set(terms_conflicting)
    named: set[int] = set()
    newest: dict[UUID, Ahead] = {}
    for name, sink in configured_sinks().items():
        if not sink.readable:
            continue
        for subject_id, entry in all_entries(sink).items():
            if entry.policy_version is not None:
                named.add(entry.policy_version)
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
                    entry.policy_version is not None and entry.policy_version not in published,
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
    ahead.sort(key=lambda a: str(a.subject_id))
    # Every change committed after the backup was lost: none was made before the newest event
    # it kept, less the time a change may take to commit. Read among the events the database's
    # own newest checkpoint covers, all from before the backup, so that nothing written since
    # the restore counts (it may not be, yet nothing stops it).
    covered = AuditCheckpoint.objects.order_by("-tree_size").values_list("last_event_id").first()
    events = ConsentEvent.objects.filter(pk__lte=covered[0]) if covered else ConsentEvent.objects
    kept_until = events.aggregate(newest=Max("created_at"))["newest"]
    settle = timedelta(seconds=settings.AUDIT_CHECKPOINT_SETTLE_SECONDS)
    return RecoveryPlan(
        audit_verify(),
        ahead,
        unknown,
        sorted(named - published - set(terms_conflicting)),
        terms_back,
        terms_conflicting,
        terms_problems,
        kept_until and kept_until - settle,
    )


def recover(plan: RecoveryPlan) -> list[Drift]:
    """Carry the plan out and repair every store; return what reconcile then found."""
    for copy in plan.terms_back:  # first: the choices made under them are then re-established
        policy_restore(copy)
    policies = {
        p.version: p
        for p in ConsentPolicy.objects.filter(published_at__isnull=False)
        if p.version not in plan.terms_conflicting
    }
    users = User.objects.in_bulk([a.subject_id for a in plan.ahead], field_name="subject_id")
    # Each user's newest state held downstream comes back as an event (two for an allowed one),
    # numbered past every number sent, so that their next change reaches every store again.
    # They are dated when the changes were lost: the checkpoints wait, lest one sign the events
    # of that time without these, still being written.
    with transaction.atomic():
        AuditCheckpoint.objects.select_for_update().order_by("-tree_size").first()
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
                lost_after=plan.lost_after,
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
