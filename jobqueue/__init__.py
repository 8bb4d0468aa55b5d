"""jobqueue: a distributed job queue with a Connect/gRPC API, Redis storage and async workers."""

from .model import Backoff, Job, JobOptions, JobStatus

__version__ = "0.1.0"
__all__ = ["Backoff", "Job", "JobOptions", "JobStatus", "__version__"]
