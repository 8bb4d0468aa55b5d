"""Prometheus metrics of jobs, queues and RPCs (docs/metrics.md): jobs.py, queues.py
and rpcs.py count and read, exposition.py serves them."""
