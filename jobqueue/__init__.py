"""jobqueue: a distributed job queue with a Connect/gRPC API, Redis storage and async workers.

from jobqueue import Producer            # enqueue straight into Redis
from jobqueue.worker import Worker       # run jobs
from jobqueue.client import Client       # call the API server
"""

from .model import Backoff, Enqueued, EnqueueRequest, Job, JobOptions, JobStatus, UniqueMode
from .producer import Producer
from .settings import Settings

__version__ = "0.1.0"
__all__ = [
    "Backoff",
    "EnqueueRequest",
    "Enqueued",
    "Job",
    "JobOptions",
    "JobStatus",
    "Producer",
    "Settings",
    "UniqueMode",
    "__version__",
]
