"""The same idempotency key twice: one job.

    python examples/idempotency.py

A client that retries an enqueue after a timeout cannot tell whether the
first one got through. With an idempotency key, the second enqueue of the same
type and key (within the idempotency window, a day by default) returns the job
the first one made instead of making another. Only the server is needed, at
JOBQUEUE_URL (default http://localhost:8080).
"""

import os
import uuid

from jobqueue import JobOptions
from jobqueue.client import SyncClient

order_id = uuid.uuid4().hex[:8]  # your own id of the thing the job is for
options = JobOptions(idempotency_key=f"receipt-for-order-{order_id}")

with SyncClient(os.environ.get("JOBQUEUE_URL", "http://localhost:8080")) as client:
    first = client.enqueue("send_receipt", f"order {order_id}", options=options)
    again = client.enqueue("send_receipt", f"order {order_id}", options=options)  # a retry, say
    other = client.enqueue("send_receipt", f"order {order_id}")  # no key: a job of its own
    for job in (first, other):  # no worker serves send_receipt here: they would wait forever
        client.cancel(job.id)

print(f"first enqueue:  job {first.id}")
print(f"second enqueue: job {again.id} ({'the same job' if again.id == first.id else 'a new job!'})")
print(f"without a key:  job {other.id} ({'the same job!' if other.id == first.id else 'a new job'})")
