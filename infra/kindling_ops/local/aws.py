"""The embedded AWS: moto in server mode, one request at a time.

moto keeps its state in plain Python objects without locks, so two requests handled
at once can interleave inside one DynamoDB transaction: both pass a condition, both
write, and an update is lost where real DynamoDB would have refused one of them.
Serialising requests restores the atomicity each AWS call has for real, which both the
local stack and the tests' concurrency checks rely on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server


class _OneAtATime:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()
        #: AWS API calls served so far (what the benches report).
        self.requests = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with self._lock:
            self.requests += 1
            return list(self._app(environ, start_response))


def _roll_back_items_not_tables() -> None:
    """Make a DynamoDB transaction in moto cost what it touches, not the size of the table.

    moto backs a transaction up by deep-copying the whole table once per item it names, so a
    20-item transaction on a table of a few thousand items takes a tenth of a second and
    gigabytes of short-lived copies. Here the table copy is the table itself, and the items a
    transaction names are copied instead and put back if it is cancelled: the same outcome
    (all or nothing) at the cost of the items.
    """
    import copy

    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    if getattr(DynamoDBBackend.transact_write_items, "rolls_back_items", False):
        return
    whole_table_backup = DynamoDBBackend.transact_write_items
    Table.__deepcopy__ = lambda self, memo: self  # type: ignore[attr-defined]

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        backups = []
        for entry in transact_items:
            op_type, op = next(iter(entry.items()))
            table = self.tables.get(op.get("TableName"))
            if table is None:
                continue
            if op_type == "Put":
                names = [table.hash_key_attr, table.range_key_attr]
                key = {name: op["Item"][name] for name in names if name and name in op["Item"]}
            else:
                key = op.get("Key") or {}
            try:
                hash_value, range_value = self.get_keys_value(table, key)
            except Exception:  # an invalid key: moto refuses the transaction before writing anything
                continue
            backups.append(
                (table, hash_value, range_value, copy.deepcopy(table.get_item(hash_value, range_value)))
            )
        try:
            whole_table_backup(self, transact_items)
        except Exception:
            for table, hash_value, range_value, item in reversed(backups):
                if range_value is None:
                    table.items.pop(hash_value, None) if item is None else table.items.__setitem__(
                        hash_value, item
                    )
                elif item is None:
                    table.items.get(hash_value, {}).pop(range_value, None)
                else:
                    table.items[hash_value][range_value] = item
            raise

    transact_write_items.rolls_back_items = True  # type: ignore[attr-defined]
    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


class EmbeddedAws:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        _roll_back_items_not_tables()
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        self._host = host
        app = _OneAtATime(DomainDispatcherApplication(create_backend_app))
        self._app = app
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="embedded-aws", daemon=True)

    @property
    def requests(self) -> int:
        """How many AWS API calls this embedded AWS has served."""
        return self._app.requests

    @property
    def endpoint(self) -> str:
        return f"http://{self._host}:{self._server.server_port}"

    def start(self) -> EmbeddedAws:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
