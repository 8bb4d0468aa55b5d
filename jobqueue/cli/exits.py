"""The `jobqueue` command's exit codes, and what a failed call to the server tells the user.

The HTTP library's errors name its own internals (`builder error`, `client error
(Connect)`, `os error 111`): each known kind becomes one line that says what to do.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from connectrpc.errors import ConnectError


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1  # something local: a file, a module, no Redis for dev...
    USAGE = 2  # argparse's own code for a wrong command line
    REFUSED = 3  # the server answered with an error
    UNREACHABLE = 4  # no answer: nothing listening, a host that does not resolve, no reply in time
    NOT_COMPLETED = 5  # `wait`: the job ended FAILED, CANCELLED or EXPIRED


EXIT_CODES_HELP = """\
exit codes:
  0  done
  1  a local failure (a file that cannot be read, a worker module that does not load...)
  2  a wrong command line (unknown option, bad duration or time, bad URL)
  3  the server refused the request (printed as "jobqueue: CODE: MESSAGE", e.g. not_found)
  4  the server is unreachable or did not answer in time (also its unavailable
     and deadline_exceeded errors: trying again later may work; `wait`: the job was not
     finished within --timeout)
  5  `wait`: the job ended FAILED, CANCELLED or EXPIRED"""


class CommandFailed(Exception):
    """A failure the user gets as one line on stderr and an exit code."""

    def __init__(self, message: str, exit_code: ExitCode) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


SET_URL = "set --url or JOBQUEUE_URL"
SET_TOKEN = "set --token or JOBQUEUE_TOKEN (the server has auth on)"


def check_url(url: str) -> str:
    """The URL of the API server, or a usage error naming what is wrong with it."""
    from ..client.endpoint import check_url as client_check_url  # noqa: PLC0415 - keeps --help light

    try:
        client_check_url(url)
    except ValueError as exc:
        raise CommandFailed(str(exc), ExitCode.USAGE) from None
    return url


def call_failure(error: ConnectError, url: str, timeout_s: float) -> CommandFailed:
    """What a failed call means to the user: the server's refusal, or why it was not reached."""
    from pyqwest import ReadError, RemoteProtocolError, WriteError  # noqa: PLC0415 - only a failed call needs it

    from ..client.endpoint import failure_reason  # noqa: PLC0415

    cause = error.__cause__
    if cause is None:  # the server (or something at that URL) answered with an error
        return _answered(error, url)
    if isinstance(cause, TimeoutError):
        return CommandFailed(
            f"the jobqueue server at {url} did not answer within {timeout_s:g} s: is it overloaded or "
            f"stuck? (--call-timeout sets the wait)",
            ExitCode.UNREACHABLE,
        )
    if isinstance(cause, ConnectionError) and "dns error" in str(cause):
        return CommandFailed(
            f"cannot resolve the host name {urlsplit(url).hostname!r} of {url}: {SET_URL}",
            ExitCode.UNREACHABLE,
        )
    if isinstance(cause, ConnectionError) and "certificate" in str(cause):
        return CommandFailed(
            f"the jobqueue server at {url} presented a certificate this client does not trust "
            f"({failure_reason(str(cause))}): if a private CA signed it, give that CA's certificate with "
            "--ca-file (or JOBQUEUE_CA_FILE)",
            ExitCode.UNREACHABLE,
        )
    if isinstance(cause, ConnectionError):
        return CommandFailed(
            f"cannot reach the jobqueue server at {url}: is it running? {SET_URL}", ExitCode.UNREACHABLE
        )
    if isinstance(cause, (RemoteProtocolError, ReadError, WriteError)):
        # Redis' port, given by mistake, answers an HTTP request by closing the connection.
        # A TLS server reached with http:// also closes the connection.
        plain = ", serving plain HTTP rather than HTTPS" if url.startswith("http://") else ""
        return CommandFailed(
            f"{url} closed the connection or answered other than HTTP: is it the jobqueue server "
            f"(not Redis, say){plain}? {SET_URL}",
            ExitCode.UNREACHABLE,
        )
    # A kind of failure not met before: its text is all there is to go on.
    return CommandFailed(f"the call to the jobqueue server at {url} failed: {cause}", ExitCode.UNREACHABLE)


def _answered(error: ConnectError, url: str) -> CommandFailed:
    from connectrpc.code import Code  # noqa: PLC0415

    code = error.code.value
    if error.code in (Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED):
        return CommandFailed(f"{code}: {error.message}", ExitCode.UNREACHABLE)
    if error.code is Code.UNIMPLEMENTED or error.message.startswith("invalid content-type"):
        # A server at that URL, but not a jobqueue server (a 404 page, another API...).
        return CommandFailed(
            f"{url} answered, but not as a jobqueue server ({code}: {error.message}): {SET_URL}",
            ExitCode.REFUSED,
        )
    if error.code is Code.UNAUTHENTICATED:  # the server has auth on
        return CommandFailed(f"{code}: {error.message}: {SET_TOKEN}", ExitCode.REFUSED)
    return CommandFailed(f"{code}: {error.message}", ExitCode.REFUSED)
