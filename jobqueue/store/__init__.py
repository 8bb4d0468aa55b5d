"""Redis storage: the key layout (keys.py), the Lua scripts (lua/), and JobStore."""

from .connection import OwnConnection
from .keys import Keyspace, QueueKeys
from .store import DAY_MS, DEFAULT_MAX_PAYLOAD_BYTES, JOB_FIELDS, JobStore, decode_job

__all__ = [
    "DAY_MS",
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "JOB_FIELDS",
    "JobStore",
    "Keyspace",
    "OwnConnection",
    "QueueKeys",
    "decode_job",
]
