from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from consent.models import TrainingRun


class ConsentError(Exception):
    """A change of consent or of a policy that cannot be made; nothing was written."""


class NoPolicy(ConsentError):
    """No terms have been published yet: there is nothing to choose under."""

    def __init__(self) -> None:
        super().__init__("No consent policy has been published.")


class NotAsked(ConsentError):
    """The user is on a commercial plan: never asked, never trained on, nothing to change."""

    def __init__(self) -> None:
        super().__init__("Users on commercial plans are not asked and cannot be changed.")


class TermsChanged(ConsentError):
    """The choice was made on a page showing terms that are no longer the current ones."""

    def __init__(self, *, shown: int, current: int) -> None:
        super().__init__(f"Policy version {shown} is not the current one ({current}).")


class ConsentThrottled(ConsentError):
    """The setting changed as often as the rate allows; retry_after says when it may again."""

    def __init__(self, *, retry_after: int) -> None:
        super().__init__(f"Too many changes: try again in {retry_after} s.")
        self.retry_after = retry_after


class AccountDeleted(ConsentError):
    """The account was deleted meanwhile, by another request: there is no one to change."""

    def __init__(self) -> None:
        super().__init__("The account was deleted.")


class ChoiceMade(ConsentError):
    """A pop-up's choice came while none was asked for any more: one was made elsewhere."""

    def __init__(self) -> None:
        super().__init__("A choice was made already: the pop-up asks for none now.")


class RunExists(ConsentError):
    """A training run of that name is registered already, selecting as of another moment."""

    def __init__(self, run: "TrainingRun") -> None:
        super().__init__(
            f"A run named {run.name!r} is registered already, selecting data as of "
            f"{run.as_of.isoformat()}. If this request retries that registration, send that "
            "as_of (a retry that leaves as_of out cannot be told from another run); if it is "
            "another run, give it another name."
        )
        self.run = run
