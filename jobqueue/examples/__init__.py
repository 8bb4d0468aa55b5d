"""Workers shipped with the package: `jobqueue dev` runs `print_worker` when given none."""
