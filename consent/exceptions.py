class ConsentError(Exception):
    """A change of consent or of a policy that cannot be made; nothing was written."""


class ConsentThrottled(ConsentError):
    """The setting changed as often as the rate allows; retry_after says when it may again."""

    def __init__(self, *, retry_after: int) -> None:
        super().__init__(f"Too many changes: try again in {retry_after} s.")
        self.retry_after = retry_after
