"""jobqueue: a distributed job queue with a Connect/gRPC API, Redis storage and async workers."""

from .model import Job, JobStatus

__version__ = "0.1.0"
__all__ = ["Job", "JobStatus", "__version__"]
