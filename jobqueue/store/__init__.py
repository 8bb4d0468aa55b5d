"""Redis storage, by role:

- keys.py: every key name (docs/design.md lists them);
- lua/: one script per state transition, with the helpers they include;
- scripts.py: loads the scripts and orders their declared keys;
- outcomes.py: the scripts' outcome codes, and the errors refusals become;
- codec.py: the job hash and back;
- transitions.py: every write of job state, one method per script;
- enqueuer.py: the enqueue batching engine;
- inspect.py: the read side;
- client.py, connection.py: Redis clients and a connection of a caller's own;
- store.py: all of it for one deployment (`Store`).

What a producer needs is `jobqueue.Producer`.
"""

from .store import Store

__all__ = ["Store"]
