"""The local stack's capacity meter: what the functions' AWS requests would cost, by AWS's own rules.

On only when ``kindling local`` starts with ``KINDLING_METER=1``. Each function's worker then labels
every AWS request it makes with the ``X-Kindling-Function`` header (see ``worker.py``); a request
without it comes from the local stack itself (its queue pump, the local SES, a bench) and is filed
under ``stack``. The embedded AWS (``aws.py``) hands the meter every request while it holds its
one-at-a-time lock, so the meter can read moto's DynamoDB state just before and just after the call
and work out the capacity units DynamoDB would bill:

- writes (PutItem, UpdateItem, DeleteItem, each item of BatchWriteItem and TransactWriteItems):
  ceil(larger of the item before and after / 1 KB), at least 1. A write whose condition fails still
  costs (the item as it is, or the item a put would have written, whichever is larger). Every item
  of TransactWriteItems costs twice, ConditionCheck items included, and so does each item of a
  cancelled transaction. Each global secondary index an item is in, before or after, costs index
  writes: 1 of the projected entry's size when the item stays with the same index keys and a
  projected attribute changed, 2 (a delete and a put) when its index keys changed, 1 when it
  enters or leaves the index. (Index writes of a transaction are not doubled: DynamoDB propagates
  a committed transaction to its indexes as ordinary writes.)
- reads: GetItem ceil(item size / 4 KB), at least 1 (a miss costs 1), halved unless ConsistentRead;
  BatchGetItem the same per key; Query and Scan the sizes of the items read in the page, before any
  filter or projection expression, rounded up to 4 KB once per page (at least 1), halved unless
  consistent (an index's read size is its entry's size: the whole item for an ALL projection);
  TransactGetItems twice the consistent cost per item.

Units are filed by caller (the function's logical id), operation and item kind (``kind_of``: the
key's prefixes, ``LEAD/EVT``; an index write's kind has ``+<index>`` appended). Other services are
counted by operation: EventBridge entries and their 64 KB chunks, SQS requests with their entries
and 64 KB chunks, Firehose records and bytes, S3 and anything else by operation. The stack adds the
Lambda side: invocations per function with their duration, and the batches its queue pump handed
to SQS-fed functions (``add_batch``). With the events EventBridge delivers to queues (counted where
moto delivers them), ``snapshot`` bills SQS as AWS would (``sqs_billed``).
"""

from __future__ import annotations

import base64
import inspect
import io
import json
import math
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

#: The header a metered worker adds to every AWS request, naming its function.
FUNCTION_HEADER = "X-Kindling-Function"
#: Who made a request that carries no function header: the local stack itself (or a bench).
STACK = "stack"
#: The account and region the embedded AWS serves (moto's default account).
ACCOUNT = "123456789012"
REGION = "us-east-1"
#: The single table's key schema in template.yaml.
KEY_ATTRIBUTES = ("PK", "SK")

KB = 1024
#: EventBridge bills each 64 KB chunk of an entry as one entry; SQS each 64 KB chunk of a request.
CHUNK = 64 * KB
#: Firehose bills ingestion per record rounded up to the next 5 KB.
FIREHOSE_ROUNDING = 5 * KB


# --- DynamoDB item sizes and capacity units (DynamoDB's documented rules) -------------------------
def _number_size(text: str) -> int:
    digits = text.lstrip("-").lower().split("e")[0].replace(".", "").strip("0") or "0"
    return (len(digits) + 1) // 2 + 1


def _binary_size(value: Any) -> int:
    """Bytes of a binary value: as bytes (boto3's deserialised form) or base64 text (the wire's)."""
    if isinstance(value, bytes | bytearray):
        return len(value)
    try:
        return len(base64.b64decode(value, validate=True))
    except (ValueError, TypeError):
        return len(str(value).encode())


def attribute_size(value: dict[str, Any]) -> int:
    """UTF-8 bytes, numbers ~1 byte per 2 digits + 1, 3 bytes per map/list plus 1 per element."""
    ((kind, v),) = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return _number_size(v)
    if kind == "B":
        return _binary_size(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in v)
    if kind == "NS":
        return sum(_number_size(x) for x in v)
    if kind == "BS":
        return sum(_binary_size(b) for b in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(x) + 1 for k, x in v.items())
    if kind == "L":
        return 3 + sum(attribute_size(x) + 1 for x in v)
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: Mapping[str, Any] | None) -> int:
    """An item's size: its attribute names' UTF-8 bytes plus its values' sizes (0 for no item)."""
    return sum(len(k.encode()) + attribute_size(v) for k, v in (item or {}).items())


def read_units(size: int, consistent: bool) -> float:
    """RCU for reading ``size`` bytes: ceil(size / 4 KB), min 1, halved when eventually consistent."""
    return max(1, math.ceil(size / (4 * KB))) * (1.0 if consistent else 0.5)


def write_units(size: int) -> int:
    """WCU for writing an item of ``size`` bytes: ceil(size / 1 KB), min 1."""
    return max(1, math.ceil(size / KB))


def key_of(item: Mapping[str, Any], attributes: Iterable[str] = KEY_ATTRIBUTES) -> dict[str, Any]:
    """An item's primary key."""
    return {k: item[k] for k in attributes if k in item}


_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _prefix(value: Any) -> str:
    """A key value's kind: its first ``#`` part when that is a name (``LEAD``), else ``*`` (a date, an id)."""
    if not isinstance(value, dict):
        return "*"
    ((kind, v),) = value.items()
    if kind != "S":
        return kind
    head = str(v).split("#")[0]
    return head if _NAME.match(head) else "*"


def kind_of(key: Mapping[str, Any], attributes: Iterable[str] = KEY_ATTRIBUTES) -> str:
    """``LEAD#ld_1 / EVT#2026...`` -> ``LEAD/EVT``; ``SEND#x / SEND`` -> ``SEND``; a key part that is
    not a name (``METRICLOG#2026-03-02 / 2026-03-02T08:00...``) -> ``METRICLOG/*``."""
    parts = [_prefix(key.get(name)) for name in attributes if name]
    if len(parts) == 2 and parts[0] == parts[1]:
        return parts[0]
    return "/".join(parts)


# --- global secondary indexes -----------------------------------------------------------------------
@dataclass(frozen=True)
class IndexShape:
    """What a global secondary index holds: its key attributes and its projection."""

    name: str
    keys: tuple[str, ...]
    projection: str = "ALL"
    include: tuple[str, ...] = ()

    @classmethod
    def from_description(cls, description: Mapping[str, Any]) -> IndexShape:
        projection = description.get("Projection") or {}
        return cls(
            name=str(description["IndexName"]),
            keys=tuple(k["AttributeName"] for k in description.get("KeySchema") or []),
            projection=str(projection.get("ProjectionType") or "ALL"),
            include=tuple(projection.get("NonKeyAttributes") or ()),
        )

    def holds(self, item: Mapping[str, Any] | None) -> bool:
        """An item is in a sparse index when it has every one of the index's key attributes."""
        return item is not None and all(name in item for name in self.keys)

    def index_key(self, item: Mapping[str, Any]) -> str:
        return json.dumps([item.get(name) for name in self.keys], sort_keys=True, default=str)

    def entry(self, item: Mapping[str, Any], table_keys: Iterable[str]) -> dict[str, Any]:
        """The index's entry for ``item``: the whole item (ALL), the table's and the index's keys
        (KEYS_ONLY), or those plus the included attributes (INCLUDE)."""
        if self.projection == "ALL":
            return dict(item)
        names = [*table_keys, *self.keys]
        if self.projection == "INCLUDE":
            names += self.include
        return {name: item[name] for name in dict.fromkeys(names) if name in item}


@dataclass(frozen=True)
class IndexState:
    """An item as one index sees it, taken at a moment (its entry's size, keys and content)."""

    present: bool
    index_key: str = ""
    size: int = 0
    content: str = ""


def index_state(index: IndexShape, item: Mapping[str, Any] | None, table_keys: Iterable[str]) -> IndexState:
    if item is None or not index.holds(item):
        return IndexState(False)
    entry = index.entry(item, table_keys)
    return IndexState(
        True, index.index_key(item), item_size(entry), json.dumps(entry, sort_keys=True, default=str)
    )


def index_write_units(before: IndexState, after: IndexState) -> int:
    """WCU one index bills for one item's write, from the item as the index saw it before and after."""
    if before.present and after.present:
        if before.index_key != after.index_key:
            return write_units(before.size) + write_units(after.size)  # delete the old entry, put the new
        if before.content != after.content:
            return write_units(max(before.size, after.size))
        return 0
    if before.present:
        return write_units(before.size)
    if after.present:
        return write_units(after.size)
    return 0


# --- one item before and after a write ----------------------------------------------------------------
@dataclass
class ItemState:
    """An item at a moment: its size, and how each index of its table saw it."""

    size: int
    indexes: dict[str, IndexState]

    @classmethod
    def of(
        cls, item: Mapping[str, Any] | None, indexes: Iterable[IndexShape], table_keys: Iterable[str]
    ) -> ItemState:
        keys = tuple(table_keys)
        return cls(item_size(item), {i.name: index_state(i, item, keys) for i in indexes})


@dataclass(frozen=True)
class WriteCost:
    """What one item's write bills: the table's WCU and each index's."""

    table: int
    indexes: dict[str, int]


def write_cost(
    before: ItemState,
    after: ItemState,
    *,
    action: str = "Put",
    transactional: bool = False,
    outcome: str = "ok",
    would_write: int = 0,
) -> WriteCost:
    """The WCU of one item's write.

    ``action``: Put, Update, Delete or ConditionCheck. ``outcome``: ``ok``, ``condition_failed`` (its
    own condition failed: the item as it is, or as a put would have made it, is billed) or
    ``cancelled`` (a transaction cancelled: each of its items is billed the same way). ``would_write``
    is the size of the item a put would have written.
    """
    factor = 2 if transactional else 1
    if action == "ConditionCheck":
        return WriteCost(write_units(before.size) * factor, {})
    if outcome != "ok":
        return WriteCost(write_units(max(before.size, would_write)) * factor, {})
    table = write_units(max(before.size, after.size)) * factor
    indexes = {}
    for name, seen_before in before.indexes.items():
        units = index_write_units(seen_before, after.indexes.get(name, IndexState(False)))
        if units:
            indexes[name] = units
    return WriteCost(table, indexes)


# --- reading moto's state -----------------------------------------------------------------------------
class _ReadSink(threading.local):
    pages: list[tuple[str, str | None, list[dict[str, Any]]]] | None = None
    #: The queues EventBridge delivered an event to during the request (one name per event).
    deliveries: list[str] | None = None


_SINK = _ReadSink()


def _install_read_capture() -> None:
    """Let the meter see what each Query and Scan page reads, before filters and projections.

    moto applies a filter expression and a projection after it has picked a page's items; here it
    is asked for the page without them, the page's items (as the index stores them, for an index)
    are noted, and then the filter and the projection are applied as moto would. With no meter
    listening, the calls go straight through.
    """
    from moto.dynamodb.models.table import Table

    if getattr(Table, "_reads_metered", False):
        return
    for name, projection in (("query", "projection_expressions"), ("scan", "projection_expression")):
        original = getattr(Table, name)
        signature = inspect.signature(original)

        def metered(
            self: Any,
            *args: Any,
            _original: Callable[..., Any] = original,
            _signature: inspect.Signature = signature,
            _projection: str = projection,
            **kwargs: Any,
        ) -> Any:
            pages = _SINK.pages
            if pages is None:
                return _original(self, *args, **kwargs)
            bound = _signature.bind(self, *args, **kwargs)
            arguments = bound.arguments
            extra = arguments.pop("filter_kwargs", {}) if "filter_kwargs" in arguments else {}
            wanted_filter = arguments.get("filter_expression")
            wanted_projection = arguments.get(_projection)
            arguments["filter_expression"] = None
            arguments[_projection] = None
            results, scanned, last_key = _original(**arguments, **extra)
            pages.append((self.name, arguments.get("index_name"), [_attributes(r) for r in results]))
            if wanted_filter is not None:
                results = [r for r in results if wanted_filter.expr(r)]
            if wanted_projection:
                results = [r.project(wanted_projection) for r in results]
            return results, scanned, last_key

        metered.__wrapped__ = original  # type: ignore[attr-defined]  # its signature, for other wrappers
        setattr(Table, name, metered)
    Table._reads_metered = True  # type: ignore[attr-defined]


def _install_delivery_count() -> None:
    """Let the meter see each event moto's EventBridge delivers to an SQS queue (a SendMessage in AWS)."""
    from moto.events.models import Rule

    if getattr(Rule, "_deliveries_metered", False):
        return
    original = Rule._send_to_sqs_queue

    def send_to_sqs_queue(self: Any, resource_id: str, *args: Any, **kwargs: Any) -> Any:
        if _SINK.deliveries is not None:
            _SINK.deliveries.append(resource_id)
        return original(self, resource_id, *args, **kwargs)

    Rule._send_to_sqs_queue = send_to_sqs_queue  # type: ignore[method-assign]
    Rule._deliveries_metered = True  # type: ignore[attr-defined]


def _attributes(item: Any) -> dict[str, Any]:
    """A moto item's attributes in the wire's form, to be sized at once (moto may change the item later)."""
    return dict(item.to_json()["Attributes"])


@contextmanager
def _capturing() -> Iterator[tuple[list[tuple[str, str | None, list[dict[str, Any]]]], list[str]]]:
    pages: list[tuple[str, str | None, list[dict[str, Any]]]] = []
    deliveries: list[str] = []
    _SINK.pages, _SINK.deliveries = pages, deliveries
    try:
        yield pages, deliveries
    finally:
        _SINK.pages, _SINK.deliveries = None, None


class _Tables:
    """moto's DynamoDB tables of the account and region, read in place (under the embedded AWS's lock)."""

    def __init__(self, account: str, region: str) -> None:
        self._account = account
        self._region = region

    def _backend(self) -> Any:
        from moto.dynamodb.models import dynamodb_backends

        return dynamodb_backends[self._account][self._region]

    def table(self, name: str) -> Any:
        name = name.rsplit(":table/", 1)[-1] if ":table/" in name else name
        return self._backend().tables.get(name)

    @staticmethod
    def key_attributes(table: Any) -> tuple[str, ...]:
        return tuple(a for a in (table.hash_key_attr, table.range_key_attr) if a)

    @staticmethod
    def indexes(table: Any) -> list[IndexShape]:
        return [IndexShape.from_description(i.describe()) for i in table.global_indexes or []]

    def item(self, table: Any, key: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            hash_key, range_key = self._backend().get_keys_value(table, dict(key))
            found = table.get_item(hash_key, range_key)
        except Exception:  # an invalid key: the call itself fails
            return None
        return None if found is None else _attributes(found)


# --- requests ---------------------------------------------------------------------------------------
_TARGET_SERVICES = {
    "DynamoDB": "dynamodb",
    "AmazonSQS": "sqs",
    "AWSEvents": "events",
    "Firehose": "firehose",
    "secretsmanager": "secretsmanager",
    "AWSKinesis": "kinesis",
    "AmazonSSM": "ssm",
    "AWSLambda": "lambda",
}


@dataclass
class Call:
    """One AWS API request as the meter sees it."""

    caller: str
    service: str
    operation: str
    params: dict[str, Any] = field(default_factory=dict)


def _body_of(environ: dict[str, Any]) -> bytes:
    """The request's body, read once and put back for moto to read."""
    length = environ.get("CONTENT_LENGTH") or ""
    if not length.isdigit() or int(length) == 0:
        return b""
    body = environ["wsgi.input"].read(int(length))
    environ["wsgi.input"] = io.BytesIO(body)
    return bytes(body)


def _service_of(environ: dict[str, Any], target: str) -> str:
    authorization = environ.get("HTTP_AUTHORIZATION", "")
    scope = re.search(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/", authorization)
    if scope:
        return scope.group(1)
    if target:
        prefix = target.split(".", 1)[0].split("_", 1)[0]
        return _TARGET_SERVICES.get(prefix, prefix.lower())
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    credential = (query.get("X-Amz-Credential") or [""])[0].split("/")
    return credential[3] if len(credential) > 3 else "unknown"


def _s3_operation(method: str, path: str, query: dict[str, list[str]], environ: dict[str, Any]) -> str:
    parts = [p for p in path.split("/") if p]
    if len(parts) <= 1:
        return {
            "GET": "ListObjectsV2" if "list-type" in query else "ListObjects",
            "PUT": "CreateBucket",
            "HEAD": "HeadBucket",
            "DELETE": "DeleteBucket",
            "POST": "DeleteObjects" if "delete" in query else "PostBucket",
        }.get(method, method)
    if method == "PUT":
        if "partNumber" in query:
            return "UploadPart"
        return "CopyObject" if environ.get("HTTP_X_AMZ_COPY_SOURCE") else "PutObject"
    if method == "POST":
        return "CreateMultipartUpload" if "uploads" in query else "CompleteMultipartUpload"
    return {"GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}.get(method, method)


def describe(environ: dict[str, Any], body: bytes) -> Call:
    """Who made a request, to which service and operation, with its parameters when they are JSON."""
    caller = environ.get("HTTP_" + FUNCTION_HEADER.upper().replace("-", "_")) or STACK
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    service = _service_of(environ, target)
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "/")
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    params: dict[str, Any] = {}
    if target:
        operation = target.rsplit(".", 1)[-1]
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            params = {}
    elif "Action" in query:
        operation = query["Action"][0]
        params = {k: v[0] for k, v in query.items()}
    elif "x-www-form-urlencoded" in environ.get("CONTENT_TYPE", "") and body:
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        operation = (form.get("Action") or [f"{method} {path}"])[0]
        params = {k: v[0] for k, v in form.items()}
    elif service == "s3":
        operation = _s3_operation(method, path, query, environ)
    elif service in ("ses", "sesv2") and method == "POST" and path.endswith("/outbound-emails"):
        operation = "SendEmail"
    else:
        words = [p for p in path.split("/") if p][:3]
        operation = f"{method} /{'/'.join(words)}"
    if not isinstance(params, dict):
        params = {}
    return Call(caller, service, operation, params)


# --- what a DynamoDB request touches ------------------------------------------------------------------
_WRITES = {"PutItem": "Put", "UpdateItem": "Update", "DeleteItem": "Delete"}


@dataclass
class _Write:
    table: Any
    key: dict[str, Any]
    action: str
    transactional: bool
    would_write: int
    before: ItemState | None = None


def _planned_writes(tables: _Tables, call: Call) -> list[_Write]:
    params = call.params
    found: list[tuple[str, dict[str, Any], str, bool]] = []  # table name, key or item, action, in a txn
    if call.operation in _WRITES:
        action = _WRITES[call.operation]
        found.append(
            (params.get("TableName", ""), params.get("Item") or params.get("Key") or {}, action, False)
        )
    elif call.operation == "BatchWriteItem":
        for name, requests in (params.get("RequestItems") or {}).items():
            for request in requests:
                if "PutRequest" in request:
                    found.append((name, request["PutRequest"].get("Item") or {}, "Put", False))
                elif "DeleteRequest" in request:
                    found.append((name, request["DeleteRequest"].get("Key") or {}, "Delete", False))
    elif call.operation == "TransactWriteItems":
        for entry in params.get("TransactItems") or []:
            for action, operation in entry.items():
                found.append(
                    (
                        operation.get("TableName", ""),
                        operation.get("Item") or operation.get("Key") or {},
                        action,
                        True,
                    )
                )
    writes = []
    for name, item_or_key, action, transactional in found:
        table = tables.table(name)
        if table is None:
            continue
        keys = tables.key_attributes(table)
        would_write = item_size(item_or_key) if action == "Put" else 0
        writes.append(_Write(table, key_of(item_or_key, keys), action, transactional, would_write))
    return writes


def _reads_by_key(tables: _Tables, call: Call) -> list[tuple[Any, dict[str, Any], bool, int]]:
    """GetItem, BatchGetItem and TransactGetItems: (table, key, consistent, times) per key read."""
    params = call.params
    keys: list[tuple[str, dict[str, Any], bool, int]] = []
    if call.operation == "GetItem":
        keys.append(
            (params.get("TableName", ""), params.get("Key") or {}, bool(params.get("ConsistentRead")), 1)
        )
    elif call.operation == "BatchGetItem":
        for name, request in (params.get("RequestItems") or {}).items():
            consistent = bool(request.get("ConsistentRead"))
            keys += [(name, key, consistent, 1) for key in request.get("Keys") or []]
    elif call.operation == "TransactGetItems":
        for entry in params.get("TransactItems") or []:
            get = entry.get("Get") or {}
            keys.append((get.get("TableName", ""), get.get("Key") or {}, True, 2))
    found = []
    for name, key, consistent, times in keys:
        table = tables.table(name)
        if table is not None:
            found.append((table, key, consistent, times))
    return found


def _error_type(status: int, response: bytes) -> str:
    if status < 400:
        return ""
    try:
        kind = str(json.loads(response or b"{}").get("__type", ""))
    except (ValueError, AttributeError):
        return "error"
    return kind.rsplit("#", 1)[-1] or "error"


# --- other services' billing units ------------------------------------------------------------------------
def eventbridge_entry_size(entry: Mapping[str, Any]) -> int:
    """A PutEvents entry's size as EventBridge bills it: Time (14 bytes), Source, DetailType, Detail and
    each resource, in UTF-8."""
    size = 14 if entry.get("Time") else 0
    for name in ("Source", "DetailType", "Detail"):
        size += len(str(entry.get(name) or "").encode())
    size += sum(len(str(r).encode()) for r in entry.get("Resources") or [])
    return size


def _chunks(size: int) -> int:
    return max(1, math.ceil(size / CHUNK))


def _sqs_message_size(message: Mapping[str, Any]) -> int:
    size = len(str(message.get("MessageBody") or "").encode())
    for name, value in (message.get("MessageAttributes") or {}).items():
        size += len(name.encode()) + len(str(value.get("DataType") or "").encode())
        size += len(str(value.get("StringValue") or "").encode()) + _binary_size(
            value.get("BinaryValue") or b""
        )
    return size


def _firehose_records(params: Mapping[str, Any]) -> list[int]:
    records = params.get("Records") or ([params["Record"]] if params.get("Record") else [])
    return [_binary_size(r.get("Data") or "") for r in records]


# --- the meter ------------------------------------------------------------------------------------------
@dataclass
class _Requests:
    count: int = 0
    entries: int = 0
    bytes: int = 0
    billed: int = 0


@dataclass
class _Capacity:
    wcu: float = 0.0
    rcu: float = 0.0
    items: int = 0


@dataclass
class _Invocations:
    count: int = 0
    duration_ms: float = 0.0
    failed: int = 0
    batches: int = 0
    messages: int = 0


class Meter:
    """Counters of AWS requests, DynamoDB capacity and Lambda invocations, since start or the last reset."""

    def __init__(self, account: str = ACCOUNT, region: str = REGION) -> None:
        _install_read_capture()
        _install_delivery_count()
        self._tables = _Tables(account, region)
        self._lock = threading.Lock()
        #: Queues that stand in for something other than SQS (the local stack's bus-to-function bridges):
        #: EventBridge's deliveries to them are not billed as SQS requests.
        self.not_billed_queues: set[str] = set()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests: dict[tuple[str, str, str], _Requests] = {}
            self._capacity: dict[tuple[str, str, str], _Capacity] = {}
            self._invocations: dict[str, _Invocations] = {}
            self._deliveries: dict[str, int] = {}
            self._errors: list[str] = []
            self._since = time.time()

    # --- the embedded AWS's side -----------------------------------------------------------------
    def serve(
        self, app: Callable[..., Iterable[bytes]], environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> list[bytes]:
        """Serve one request through ``app``, metering it. The caller holds the one-at-a-time lock."""
        body = _body_of(environ)
        try:
            call = describe(environ, body)
            writes = self._before(call)
        except Exception as exc:  # the meter never stands in a request's way
            self._note_error(f"before: {type(exc).__name__}: {exc}")
            return list(app(environ, start_response))
        statuses: list[int] = []

        def capture(status: str, headers: Any, exc_info: Any = None) -> Any:
            statuses.append(int(status.split()[0]))
            return start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

        with _capturing() as (pages, deliveries):
            chunks = list(app(environ, capture))
        try:
            self._after(call, writes, statuses[0] if statuses else 500, b"".join(chunks), pages)
            self._delivered(deliveries)
        except Exception as exc:
            self._note_error(f"{call.service}.{call.operation}: {type(exc).__name__}: {exc}")
        return chunks

    def _delivered(self, queues: list[str]) -> None:
        with self._lock:
            for queue in queues:
                self._deliveries[queue] = self._deliveries.get(queue, 0) + 1

    def _note_error(self, text: str) -> None:
        with self._lock:
            if len(self._errors) < 20:
                self._errors.append(text)

    def _before(self, call: Call) -> list[_Write]:
        if call.service != "dynamodb":
            return []
        writes = _planned_writes(self._tables, call)
        for write in writes:
            write.before = self._state(write.table, write.key)
        return writes

    def _state(self, table: Any, key: Mapping[str, Any]) -> ItemState:
        return ItemState.of(
            self._tables.item(table, key), self._tables.indexes(table), self._tables.key_attributes(table)
        )

    def _after(
        self,
        call: Call,
        writes: list[_Write],
        status: int,
        response: bytes,
        pages: list[tuple[str, str | None, list[dict[str, Any]]]],
    ) -> None:
        entries, size, billed = 0, 0, 1
        params = call.params
        if call.service == "events" and call.operation == "PutEvents":
            sizes = [eventbridge_entry_size(e) for e in params.get("Entries") or []]
            entries, size, billed = len(sizes), sum(sizes), sum(_chunks(s) for s in sizes)
        elif call.service == "sqs":
            messages = params.get("Entries") if "Entries" in params else None
            if call.operation == "SendMessage":
                size = _sqs_message_size(params)
                entries, billed = 1, _chunks(size)
            elif call.operation == "SendMessageBatch":
                sizes = [_sqs_message_size(m) for m in messages or []]
                entries, size, billed = len(sizes), sum(sizes), _chunks(sum(sizes))
            elif messages is not None:
                entries = len(messages)
        elif call.service == "firehose" and call.operation in ("PutRecord", "PutRecordBatch"):
            sizes = _firehose_records(params)
            entries, size = len(sizes), sum(sizes)
            billed = sum(math.ceil(max(s, 1) / FIREHOSE_ROUNDING) * FIREHOSE_ROUNDING for s in sizes)
        elif call.service in ("ses", "sesv2") and call.operation == "SendEmail":
            entries = 1
        with self._lock:
            counter = self._requests.setdefault((call.caller, call.service, call.operation), _Requests())
            counter.count += 1
            counter.entries += entries
            counter.bytes += size
            counter.billed += billed
        if call.service == "dynamodb":
            self._dynamodb(call, writes, status, response, pages)

    def _dynamodb(
        self,
        call: Call,
        writes: list[_Write],
        status: int,
        response: bytes,
        pages: list[tuple[str, str | None, list[dict[str, Any]]]],
    ) -> None:
        error = _error_type(status, response)
        if writes:
            if error in ("", "ConditionalCheckFailedException", "TransactionCanceledException"):
                outcome = {"": "ok", "ConditionalCheckFailedException": "condition_failed"}.get(
                    error, "cancelled"
                )
                for write in writes:
                    self._bill_write(call, write, outcome)
            return
        if error:
            return
        if call.operation in ("Query", "Scan"):
            consistent = bool(call.params.get("ConsistentRead"))
            for table_name, index_name, items in pages:
                self._bill_page(call, table_name, index_name, items, consistent)
            return
        for table, key, consistent, times in _reads_by_key(self._tables, call):
            keys = self._tables.key_attributes(table)
            size = item_size(self._tables.item(table, key))
            self._add(
                call.caller, call.operation, kind_of(key, keys), rcu=read_units(size, consistent) * times
            )

    def _bill_write(self, call: Call, write: _Write, outcome: str) -> None:
        assert write.before is not None
        after = self._state(write.table, write.key) if outcome == "ok" else write.before
        cost = write_cost(
            write.before,
            after,
            action=write.action,
            transactional=write.transactional,
            outcome=outcome,
            would_write=write.would_write,
        )
        kind = kind_of(write.key, self._tables.key_attributes(write.table))
        self._add(call.caller, call.operation, kind, wcu=cost.table)
        for index, units in cost.indexes.items():
            self._add(call.caller, call.operation, f"{kind}+{index}", wcu=units, items=1)

    def _bill_page(
        self,
        call: Call,
        table_name: str,
        index_name: str | None,
        items: list[dict[str, Any]],
        consistent: bool,
    ) -> None:
        table = self._tables.table(table_name)
        keys = self._tables.key_attributes(table) if table is not None else KEY_ATTRIBUTES
        suffix = f"+{index_name}" if index_name else ""
        sizes = [item_size(item) for item in items]
        units = read_units(sum(sizes), consistent)
        if not items:
            self._add(call.caller, call.operation, f"(none){suffix}", rcu=units, items=0)
            return
        total = sum(sizes) or len(sizes)
        by_kind: dict[str, list[int]] = {}
        for item, item_bytes in zip(items, sizes, strict=True):
            by_kind.setdefault(kind_of(item, keys) + suffix, []).append(item_bytes or 1)
        for kind, kind_sizes in by_kind.items():
            self._add(
                call.caller, call.operation, kind, rcu=units * sum(kind_sizes) / total, items=len(kind_sizes)
            )

    def _add(
        self, caller: str, operation: str, kind: str, wcu: float = 0, rcu: float = 0, items: int = 1
    ) -> None:
        with self._lock:
            counter = self._capacity.setdefault((caller, operation, kind), _Capacity())
            counter.wcu += wcu
            counter.rcu += rcu
            counter.items += items

    # --- the stack's side ---------------------------------------------------------------------------
    def add_invocation(self, function: str, duration_ms: float, failed: bool = False) -> None:
        """One invocation of ``function`` and how long its handler ran."""
        with self._lock:
            counter = self._invocations.setdefault(function, _Invocations())
            counter.count += 1
            counter.duration_ms += duration_ms
            counter.failed += int(failed)

    def add_batch(self, function: str, messages: int) -> None:
        """A batch of ``messages`` handed from its queue to ``function`` (an SQS event source)."""
        with self._lock:
            counter = self._invocations.setdefault(function, _Invocations())
            counter.batches += 1
            counter.messages += messages

    # --- what it found ----------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Every counter since start or the last reset, as JSON."""
        with self._lock:
            requests = [
                {"caller": c, "service": s, "operation": o, **vars(v)}
                for (c, s, o), v in sorted(self._requests.items())
            ]
            capacity = [
                {"caller": c, "operation": o, "kind": k, **vars(v)}
                for (c, o, k), v in sorted(self._capacity.items())
            ]
            invocations = {name: dict(vars(v)) for name, v in sorted(self._invocations.items())}
            deliveries = dict(sorted(self._deliveries.items()))
            errors = list(self._errors)
            since = self._since
        billed_deliveries = {q: n for q, n in deliveries.items() if q not in self.not_billed_queues}
        return {
            "since": since,
            "seconds": round(time.time() - since, 3),
            "requests": requests,
            "capacity": capacity,
            "invocations": invocations,
            "eventbridge_to_sqs": deliveries,
            "sqs_billed": sqs_billed(requests, invocations, billed_deliveries),
            "errors": errors,
        }


def sqs_billed(
    requests: list[dict[str, Any]],
    invocations: Mapping[str, Mapping[str, Any]],
    deliveries: Mapping[str, int],
) -> dict[str, Any]:
    """SQS requests as AWS would bill them, which the local queue pump does not make the same way.

    An event source mapping makes 1 ReceiveMessage and 1 DeleteMessageBatch per batch it hands to its
    function; EventBridge makes 1 SendMessage per event it delivers to a queue (``deliveries``, by
    queue); the functions' own SQS requests count as they were made (each 64 KB chunk of one a
    request). The pump's own requests (single receives, deletes, empty polls) are left out; they are
    in ``requests`` under ``stack``.
    """
    batches = sum(int(v.get("batches", 0)) for v in invocations.values())
    delivered = sum(deliveries.values())
    own: dict[str, int] = {}
    for row in requests:
        if row["service"] == "sqs" and row["caller"] != STACK:
            own[row["operation"]] = own.get(row["operation"], 0) + int(row["billed"])
    total = 2 * batches + delivered + sum(own.values())
    return {
        "event_source_receive": batches,
        "event_source_delete_batch": batches,
        "eventbridge_send": delivered,
        "functions": own,
        "total": total,
    }
