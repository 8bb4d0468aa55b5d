"""The example `print` worker, run from a checkout as the original quick start runs it:

python examples/print_worker.py        # Redis from REDIS_URL or REDIS_ADDR

The worker itself lives in the package (jobqueue/examples/print_worker.py), so that
`jobqueue dev` runs it from any directory and `jobqueue worker
jobqueue.examples.print_worker` works wherever jobqueue is installed.
"""

from jobqueue.examples.print_worker import worker

if __name__ == "__main__":
    worker.run()
