"""What a handler raises to steer retries. Any other exception is an ordinary
failure: retried with backoff while attempts are left."""

from __future__ import annotations


class PermanentError(Exception):
    """The job cannot succeed however often it runs: fail it now, without retries."""


class RetryAfter(Exception):
    """Run the job again after `seconds` instead of the backoff (if attempts are left)."""

    def __init__(self, seconds: float, reason: str = "") -> None:
        if seconds < 0:
            raise ValueError("RetryAfter: seconds must be >= 0")
        super().__init__(reason or f"retry after {seconds:g} s")
        self.seconds = seconds


class PayloadDecodeError(PermanentError):
    """A typed handler's payload does not decode into its type: failed at once, not retried."""
