"""The fault-injection suite: `python tests/chaos/run.py [--small] [--seed N]` (see run.py)."""
