"""Domain errors. Adapters translate AWS errors into these; handlers map them to HTTP or retries."""

from __future__ import annotations


class KindlingError(Exception):
    """Base of every error the domain raises on purpose."""


class InvalidInput(KindlingError):
    """The caller sent something we will never accept: a 4xx, not a retry."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class PayloadTooLarge(InvalidInput):
    pass


class Unauthorized(KindlingError):
    pass


class NotFound(KindlingError):
    pass


class Conflict(KindlingError):
    """A conditional write lost a race; re-read and try again."""


class Duplicate(KindlingError):
    """This message was already applied; applying it again must change nothing."""


class Retryable(KindlingError):
    """A dependency failed or throttled; the same input may succeed later."""
