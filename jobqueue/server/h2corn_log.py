"""h2corn's stderr, less its error lines for clients that left.

h2corn 2.0 reports a client that resets a stream or closes its connection
while the answer is being written as a failed request ("request failed: stream
channel was closed", "... connection writer was closed", or the same as a JSON
record of level "error"), from its Rust side, where no Python
logging setting reaches. That race is normal client behaviour (a gRPC client
whose deadline passes resets the stream): it must not read as a server error.
So `jobqueue server --server h2corn` sends h2corn's stderr through this filter,
run as a small process of its own, which drops exactly those lines and passes
everything else through unchanged.

Run as a script (`python -I h2corn_log.py`), it is the filter: stdin to stderr.
It uses the standard library only, so that it starts without the server's
imports.
"""

from __future__ import annotations

import json
import os
import signal
import sys

# What h2corn says when the client's reset or close races the answer. Any other
# failure (an exception of the app, a response the app left unfinished) stays visible.
CLIENT_GONE = frozenset({"stream channel was closed", "connection writer was closed"})
_TEXT_PREFIX = b"request failed: "


def is_client_gone(line: bytes) -> bool:
    """Whether `line` is h2corn's error line for a client that left mid-answer."""
    stripped = line.strip()
    if stripped.startswith(_TEXT_PREFIX):
        return stripped[len(_TEXT_PREFIX) :].decode(errors="replace") in CLIENT_GONE
    if stripped.startswith(b"{") and b'"failed"' in stripped:
        try:
            record = json.loads(stripped)
        except ValueError:
            return False
        return (
            isinstance(record, dict)
            and record.get("event") == "failed"
            and record.get("subject") == "request"
            and record.get("detail") in CLIENT_GONE
        )
    return False


def filter_stderr() -> None:
    """Replaces this process's stderr by a pipe into the filter, which writes to
    the old stderr. The filter is not this process's child (a supervisor that
    waits for its children must not see it), and it ends when every process
    writing to the pipe has closed it."""
    read_fd, write_fd = os.pipe()
    first = os.fork()
    if first == 0:
        try:
            if os.fork() == 0:
                os.close(write_fd)
                os.dup2(read_fd, 0)
                os.execv(sys.executable, [sys.executable, "-I", __file__])
        finally:
            os._exit(0)
    os.waitpid(first, 0)
    os.close(read_fd)
    os.dup2(write_fd, 2)
    os.close(write_fd)


def main() -> None:
    # Only the end of its input ends the filter: a Ctrl-C or SIGTERM meant for the
    # server reaches this process too, and the server's last words must get out.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    out = sys.stderr.buffer
    for line in sys.stdin.buffer:
        if is_client_gone(line):
            continue
        try:
            out.write(line)
            out.flush()
        except OSError:
            return


if __name__ == "__main__":
    main()
