"""Runs the real Lambda handlers in this process, one invocation at a time.

Each function sees exactly the environment the template gives it, set around its import
(its cold start) and around every invocation. One lock serialises invocations: that is
what lets functions with different environments share a process, and it is also how a
single Lambda execution environment behaves.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from kindling_ops.lambda_events import LambdaContext
from kindling_ops.local.template import FunctionSpec


class LocalRuntime:
    def __init__(self, specs: list[FunctionSpec], base_environment: dict[str, str]) -> None:
        self.specs = {spec.logical_id: spec for spec in specs}
        self._base = base_environment
        self._handlers: dict[str, Callable[[dict[str, Any], Any], Any]] = {}
        self.lock = threading.RLock()

    @contextmanager
    def _environment(self, spec: FunctionSpec) -> Iterator[None]:
        wanted = {**self._base, **spec.environment}
        saved = {key: os.environ.get(key) for key in wanted}
        os.environ.update(wanted)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def load(self, logical_id: str) -> Callable[[dict[str, Any], Any], Any]:
        """Import the function's handler module: its cold start, under its own environment."""
        if logical_id in self._handlers:
            return self._handlers[logical_id]
        spec = self.specs[logical_id]
        if not spec.module_file.is_file():
            raise FileNotFoundError(f"{logical_id}: handler file {spec.module_file} does not exist")
        module_name = f"kindling_function_{logical_id}"
        with self.lock, self._environment(spec):
            module_spec = importlib.util.spec_from_file_location(module_name, spec.module_file)
            assert module_spec is not None and module_spec.loader is not None
            module: ModuleType = importlib.util.module_from_spec(module_spec)
            sys.modules[module_name] = module
            sys.path.insert(0, str(spec.code_dir))
            try:
                module_spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(spec.code_dir))
        handler = getattr(module, spec.attribute)
        self._handlers[logical_id] = handler
        return handler

    def invoke(self, logical_id: str, event: dict[str, Any]) -> Any:
        handler = self.load(logical_id)
        spec = self.specs[logical_id]
        context = LambdaContext(spec.name, spec.timeout)
        with self.lock, self._environment(spec):
            return handler(event, context)
