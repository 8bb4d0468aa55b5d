"""The API server: the Connect/gRPC app (app.py) and its runner (main.py)."""

from .app import create_app
from .main import run, run_h2corn, serve

__all__ = ["create_app", "run", "run_h2corn", "serve"]
