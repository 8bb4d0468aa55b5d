"""Bearer tokens: how they are made, the file that lists their hashes, and the
lookup of a presented token's role.

The file (setting `auth_tokens_file`) has one token a line, `ROLE sha256:HEX`,
HEX being the SHA-256 of the token; `#` starts a comment, blank lines are
skipped; a role may have several lines (rotation: add the new token's line,
move the clients, remove the old line). docs/security.md describes it.

A plain SHA-256 is enough because a token is 256 random bits (`new_token`), not
a password a person chose: no dictionary or brute force reaches a preimage, so a
slow password hash (bcrypt, argon2) would only cost every call its time. The
file then holds nothing that lets a reader call the API.

A presented token's hash is compared with every entry with `hmac.compare_digest`,
all of them each time: the time a lookup takes does not say which entry, or how
much of one, matched. (Comparing hashes rather than tokens already tells an
attacker nothing they could steer.)

The server re-reads the file when it changes: `TokensFile.current()` looks at
its modification time, size and inode at most every CHECK_EVERY_S, on a call,
so that a rotation needs no restart and no signal (h2corn's process owns those).
A new version that does not parse is logged (WARNING, naming the line) and the
tokens read before stay in force; a file with no tokens is refused at startup
(a wrong path, most likely) but, once running, revokes every token.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable

from .roles import ROLES

log = logging.getLogger("jobqueue.auth")

TOKEN_PREFIX = "jq_"  # so that secret scanners and people can tell a jobqueue token
TOKEN_BYTES = 32
HASH_SCHEME = "sha256:"
CHECK_EVERY_S = 1.0
_HEX64 = re.compile(r"[0-9a-f]{64}")
LINE_FORMAT = "ROLE sha256:HEX (the line `jobqueue token new` prints)"


class TokensFileError(ValueError):
    """The tokens file cannot be read or a line of it is malformed; the message names
    the file and the line, never what the line holds (it might be a token)."""


@dataclasses.dataclass(frozen=True, slots=True)
class TokenEntry:
    role: str
    digest: bytes  # SHA-256 of the token
    line: int


def new_token() -> str:
    """A new token: TOKEN_BYTES random bytes, URL-safe base64, after TOKEN_PREFIX."""
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def digest_of(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def file_line(role: str, token: str) -> str:
    """The tokens file's line for `token`."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    return f"{role} {HASH_SCHEME}{digest_of(token).hex()}"


def parse_tokens(text: str, name: str) -> tuple[TokenEntry, ...]:
    """The entries of a tokens file's text; `name` (its path) is for the messages."""
    entries: list[TokenEntry] = []
    first_line: dict[bytes, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"tokens file {name}, line {number}"
        if len(fields) != 2:  # a role and a hash
            raise TokensFileError(f"{where}: expected {LINE_FORMAT}, found {len(fields)} fields")
        role, hashed = fields
        if role not in ROLES:
            raise TokensFileError(f"{where}: the role is none of {', '.join(ROLES)}")
        hex_digest = hashed.removeprefix(HASH_SCHEME).lower()
        if not hashed.startswith(HASH_SCHEME) or not _HEX64.fullmatch(hex_digest):
            raise TokensFileError(
                f"{where}: the token's hash must be sha256: and 64 hex digits (the token's hash, "
                "not the token: `jobqueue token new` prints the line)"
            )
        digest = bytes.fromhex(hex_digest)
        if digest in first_line:
            raise TokensFileError(f"{where}: the same token as line {first_line[digest]}")
        first_line[digest] = number
        entries.append(TokenEntry(role, digest, number))
    return tuple(entries)


def read_tokens_file(path: str) -> tuple[TokenEntry, ...]:
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        raise TokensFileError(f"tokens file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TokensFileError(f"tokens file {path}: cannot be read: {reason}") from None
    return parse_tokens(text, path)


class Tokens:
    """A set of entries, and the role of a presented token."""

    def __init__(self, entries: Iterable[TokenEntry]) -> None:
        self.entries = tuple(entries)

    def role_of(self, token: str) -> str | None:
        """The role `token` grants; None if it is not listed. Every entry is compared."""
        digest = digest_of(token)
        role = None
        for entry in self.entries:
            if hmac.compare_digest(digest, entry.digest):
                role = entry.role
        return role


_NOTHING = object()


class TokensFile:
    """The tokens of a file, read again when it changes (see the module's docstring)."""

    def __init__(
        self, path: str, *, check_every_s: float = CHECK_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self.check_every_s = check_every_s
        self._clock = clock
        self._signature = self._stat()
        self._tokens = Tokens(read_tokens_file(path))
        if not self._tokens.entries:
            raise TokensFileError(
                f"tokens file {path} lists no token: add one (`jobqueue token new --role admin` prints "
                "its line), or leave the setting empty to turn auth off"
            )
        self._next_check = clock() + check_every_s
        self._refused_signature: object = _NOTHING  # a version refused, not to be read again

    def current(self) -> Tokens:
        now = self._clock()
        if now >= self._next_check:
            self._next_check = now + self.check_every_s
            self._reload_if_changed()
        return self._tokens

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size, stat.st_ino)

    def _reload_if_changed(self) -> None:
        signature = self._stat()
        if signature in (self._signature, self._refused_signature):
            return
        kept = f"keeping the {len(self._tokens.entries)} token(s) read before"
        if signature is None:
            self._refused_signature = signature
            log.warning("tokens file %s is gone; %s", self.path, kept)
            return
        try:
            entries = read_tokens_file(self.path)
        except TokensFileError as exc:
            self._refused_signature = signature
            log.warning("%s; %s", exc, kept)
            return
        self._signature = signature
        self._tokens = Tokens(entries)
        log.info("tokens file %s read again: %d token(s)", self.path, len(entries))
