from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from consent.models import TrainingRun


class ConsentError(Exception):
    """A change of consent or of a policy that cannot be made; nothing was written."""


class ConsentThrottled(ConsentError):
    """The setting changed as often as the rate allows; retry_after says when it may again."""

    def __init__(self, *, retry_after: int) -> None:
        super().__init__(f"Too many changes: try again in {retry_after} s.")
        self.retry_after = retry_after


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
