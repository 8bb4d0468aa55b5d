"""Bearer tokens and roles (docs/security.md): roles.py says what each role may
call, tokens.py makes tokens and reads the file of their hashes. The server's
check is jobqueue/server/auth.py; clients send a token with `token=`."""

from .roles import ADMIN, PRODUCER, READER, ROLES, Caller, may_call, methods_of, service_methods
from .tokens import Tokens, TokensFile, TokensFileError, file_line, new_token

__all__ = [
    "ADMIN",
    "PRODUCER",
    "READER",
    "ROLES",
    "Caller",
    "Tokens",
    "TokensFile",
    "TokensFileError",
    "file_line",
    "may_call",
    "methods_of",
    "new_token",
    "service_methods",
]
