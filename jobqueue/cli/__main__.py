"""`python -m jobqueue.cli`: the `jobqueue` command."""

import sys

from . import main

sys.exit(main())
