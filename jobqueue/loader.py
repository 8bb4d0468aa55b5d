"""Finds the workers a user module defines (`jobqueue worker MODULE[:ATTR]`)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from .worker import Worker

DEFAULT_ATTRS = ("worker", "workers")


def load_workers(spec: str) -> list[Worker]:
    """`spec` is `package.module[:attr]` or `path/to/file.py[:attr]`.

    The attribute is a Worker or an iterable of Workers; without `:attr` the
    module's `worker` or `workers` is used.
    """
    target, _, attr = spec.partition(":")
    if attr == "" and spec.count(":") == 1 and len(target) == 1:  # a Windows drive letter
        target, attr = spec, ""
    module = _import(target)
    names = (attr,) if attr else DEFAULT_ATTRS
    for name in names:
        if hasattr(module, name):
            return _as_workers(getattr(module, name), f"{target}:{name}")
    raise LookupError(f"{target} has no attribute {' or '.join(names)} (expected a Worker or a list of them)")


def _import(target: str) -> ModuleType:
    if target.endswith(".py") or "/" in target:
        path = Path(target)
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {target}")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot import {target}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[path.stem] = module
        module_spec.loader.exec_module(module)
        return module
    if "" not in sys.path:
        sys.path.insert(0, "")  # like `python -m`: modules of the current directory
    return importlib.import_module(target)


def _as_workers(value: object, where: str) -> list[Worker]:
    if isinstance(value, Worker):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        workers = list(value)
        if workers and all(isinstance(w, Worker) for w in workers):
            return workers
    raise TypeError(f"{where} is not a Worker or a list of Workers")
