"""The embedded AWS: moto in server mode, one request at a time.

moto keeps its state in plain Python objects without locks, so two requests handled
at once can interleave inside one DynamoDB transaction: both pass a condition, both
write, and an update is lost where real DynamoDB would have refused one of them.
Serialising requests restores the atomicity each AWS call has for real, which both the
local stack and the tests' concurrency checks rely on.
"""

from __future__ import annotations

import inspect
import io
import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from kindling_ops.local.meter import Meter


class _OneAtATime:
    def __init__(self, app: Callable[..., Iterable[bytes]], meter: Meter | None = None) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._meter = meter
        #: AWS API calls served so far (what the benches report).
        self.requests = 0
        #: The tags of each email SES v2 accepted, by message id (SES puts them on the email's events).
        self.email_tags: dict[str, dict[str, str]] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        with self._lock:
            self.requests += 1
            sending = environ.get("REQUEST_METHOD") == "POST" and str(environ.get("PATH_INFO", "")).endswith(
                "/v2/email/outbound-emails"
            )
            body = _read_body(environ) if sending else b""
            if self._meter is not None:  # it reads moto's state before and after: only under the lock
                chunks = self._meter.serve(self._app, environ, start_response)
            else:
                chunks = list(self._app(environ, start_response))
            if sending:
                self._note_tags(body, b"".join(chunks))
            return chunks

    def _note_tags(self, request: bytes, response: bytes) -> None:
        try:
            message_id = json.loads(response or b"{}").get("MessageId")
            tags = json.loads(request or b"{}").get("EmailTags") or []
        except (ValueError, AttributeError):
            return
        if message_id:
            self.email_tags[str(message_id)] = {str(t.get("Name")): str(t.get("Value")) for t in tags}


def _read_body(environ: dict[str, Any]) -> bytes:
    """A request's body, put back for moto to read."""
    length = str(environ.get("CONTENT_LENGTH") or "")
    if not length.isdigit():
        return b""
    body = environ["wsgi.input"].read(int(length))
    environ["wsgi.input"] = io.BytesIO(body)
    return bytes(body)


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


class _QueryItems(threading.local):
    """The items a Query in progress on this thread may look at (see ``_reads_without_sorting_the_table``)."""

    table: Any = None
    items: list[Any] | None = None


_QUERYING = _QueryItems()


def _reads_without_sorting_the_table() -> None:
    """Make a DynamoDB Query in moto cost what it can match, and a Scan page a cheaper sort.

    moto answers every Query by sorting all of the table's items, then keeping those of the
    partition (or, on an index, those with the index's keys), then sorting those: a Query on a
    table of 20,000 items takes half a second, so the local stack slows as its table grows. Here a
    table Query looks at its partition's items only, and an index Query at the table's items
    unsorted (those whose string hash key matches, when it is a string). The result is the same:
    moto checks the conditions as before, and sorts what it kept by the keys it returns them in
    (a partition's range keys; an index's keys and then the table's, which no two items share).
    A Scan page still sorts the table by its keys, on the keys' values (a string, a number)
    rather than on moto's key objects, which compare the same way, several times slower.
    """
    from moto.dynamodb.models.table import Table

    if getattr(Table, "_reads_without_sorting", False):
        return
    whole_table_query = Table.query
    signature = inspect.signature(whole_table_query)

    def unsorted(table: Any) -> list[Any]:
        if table.range_key_attr:
            return [item for partition in table.items.values() for item in partition.values()]
        return list(table.items.values())

    def all_items(self: Any) -> list[Any]:
        if _QUERYING.table is self and _QUERYING.items is not None:
            return _QUERYING.items
        if self.range_key_attr:
            return sorted(unsorted(self), key=lambda i: (i.hash_key.cast_value, i.range_key.cast_value))
        return sorted(unsorted(self), key=lambda i: i.hash_key.cast_value)

    def query(self: Any, *args: Any, **kwargs: Any) -> Any:
        arguments = signature.bind(self, *args, **kwargs).arguments
        hash_key = arguments.get("hash_key")
        if arguments.get("index_name") is None and hash_key is not None:
            partition = self.items.get(hash_key)
            if partition is None:
                items = []
            else:
                items = list(partition.values()) if self.range_key_attr else [partition]
        else:
            items = unsorted(self)
            # moto keeps the items whose index hash key equals the condition's value; for a string
            # that is plain equality of the value, checked here in one pass instead of item by item.
            strings = [(n, v) for n, v in arguments.get("hash_key_conditions") or [] if v.type == "S"]
            if strings:
                items = [i for i in items if all(_same_string(i.attrs.get(n), v.value) for n, v in strings)]
        _QUERYING.table, _QUERYING.items = self, items
        try:
            return whole_table_query(self, *args, **kwargs)
        finally:
            _QUERYING.table, _QUERYING.items = None, None

    query.__wrapped__ = whole_table_query  # type: ignore[attr-defined]  # its signature, for other wrappers
    Table.all_items = all_items  # type: ignore[method-assign]
    Table.query = query  # type: ignore[method-assign]
    Table._reads_without_sorting = True  # type: ignore[attr-defined]


def _same_string(value: Any, expected: str) -> bool:
    return value is not None and value.type == "S" and value.value == expected


class EmbeddedAws:
    """moto's server on ``host``; with a ``meter``, every request it serves is metered (``meter.py``)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, meter: Meter | None = None) -> None:
        _roll_back_items_not_tables()
        _reads_without_sorting_the_table()
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )

        self._host = host
        app = _OneAtATime(DomainDispatcherApplication(create_backend_app), meter)
        self._app = app
        self.meter = meter
        self._server: BaseWSGIServer = make_server(
            host, port, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, name="embedded-aws", daemon=True)

    @property
    def requests(self) -> int:
        """How many AWS API calls this embedded AWS has served."""
        return self._app.requests

    def email_tags(self, message_id: str) -> dict[str, str]:
        """The tags an email was sent with through SES v2 (none for one it does not know)."""
        return dict(self._app.email_tags.get(message_id, {}))

    @property
    def endpoint(self) -> str:
        return f"http://{self._host}:{self._server.server_port}"

    def start(self) -> EmbeddedAws:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)
