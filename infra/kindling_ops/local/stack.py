"""The whole system on localhost: moto in server mode, the real handlers, and what moto lacks.

moto stores and routes (tables, queues, bus rules to queues, dead-letter redrive). It
does not run Lambda code, poll queues for functions, fire schedules or serve an HTTP
API; this module does, from the same template.yaml that deploys to AWS.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from kindling.adapters import aws
from kindling.adapters.config_store import DynamoConfigStore
from kindling.kernel import clock as kindling_clock
from kindling_ops.config import ConfigError
from kindling_ops.config import apply as apply_config
from kindling_ops.config import documents as config_documents
from kindling_ops.config import load as load_config
from kindling_ops.lambda_events import scheduled_event, sqs_event, sqs_record_of
from kindling_ops.layer import lambda_path
from kindling_ops.local.aws import EmbeddedAws
from kindling_ops.local.gateway import Gateway
from kindling_ops.local.meter import Meter
from kindling_ops.local.provision import provision
from kindling_ops.local.runtime import LocalRuntime
from kindling_ops.local.schedules import Schedule, ScheduleError
from kindling_ops.local.ses import LocalSes
from kindling_ops.local.template import REGION, Template, TemplateError, functions

#: Settings the local stack takes from the environment, with dev defaults: the template's
#: parameters, and the values it puts in the template's secrets (see ``SECRET_VALUES``).
PARAMETER_ENVIRONMENT = {
    "WriteKey": ("KINDLING_WRITE_KEY", "dev-write-key"),
    "AdminToken": ("KINDLING_ADMIN_TOKEN", "dev-admin-token-change-me"),
    "AllowedOrigins": ("KINDLING_ALLOWED_ORIGINS", "*"),
    "LogLevel": ("KINDLING_LOG_LEVEL", "WARNING"),
    "HandoffUrl": ("KINDLING_HANDOFF_URL", "http://127.0.0.1:{port}/_local/webhooks/sales"),
    "LinkSigningSecret": ("KINDLING_LINK_SECRET", "dev-link-signing-secret-change-me-0123456789"),
    "ErasureKey": ("KINDLING_ERASURE_KEY", "dev-erasure-hash-key-change-me-0123456789"),
    "PublicApiUrl": ("KINDLING_PUBLIC_API_URL", "http://127.0.0.1:{port}"),
    "HandoffSigningSecret": (
        "KINDLING_HANDOFF_SECRET",
        "whsec_" + base64.b64encode(b"kindling-local-handoff-key").decode(),
    ),
    "HubspotClientSecret": ("KINDLING_HUBSPOT_CLIENT_SECRET", "dev-hubspot-client-secret-change-me"),
    "HubspotAccessToken": ("KINDLING_HUBSPOT_ACCESS_TOKEN", ""),
    "HubspotApiUrl": ("KINDLING_HUBSPOT_API_URL", "https://api.hubapi.com"),
    "PipedriveUser": ("KINDLING_PIPEDRIVE_USER", "kindling"),
    "PipedrivePassword": ("KINDLING_PIPEDRIVE_PASSWORD", "dev-pipedrive-password-change-me"),
    "SalesforceOrgId": ("KINDLING_SALESFORCE_ORG_ID", "00Dxx0000000001AAA"),
    "SalesforceSecret": ("KINDLING_SALESFORCE_SECRET", "dev-salesforce-secret-change-me"),
    "CrmWebhookSecret": (
        "KINDLING_WEBHOOK_SECRET",
        "whsec_" + base64.b64encode(b"kindling-local-crm-webhook-key").decode(),
    ),
}


#: Which settings above each secret of the template holds; a dict is a JSON secret, a field per setting.
SECRET_VALUES: dict[str, str | dict[str, str]] = {
    "WriteKeySecret": "WriteKey",
    "AdminTokenSecret": "AdminToken",
    "LinkSigningSecret": "LinkSigningSecret",
    "ErasureKeySecret": "ErasureKey",
    "HandoffSigningSecret": "HandoffSigningSecret",
    "CrmWebhookSecrets": {
        "hubspot_client_secret": "HubspotClientSecret",
        "hubspot_access_token": "HubspotAccessToken",
        "pipedrive_user": "PipedriveUser",
        "pipedrive_password": "PipedrivePassword",
        "salesforce_org_id": "SalesforceOrgId",
        "salesforce_secret": "SalesforceSecret",
        "webhook_secret": "CrmWebhookSecret",
    },
}


def secret_strings(settings: dict[str, str]) -> dict[str, str]:
    """The value of each secret (by logical id) that the local stack fills from its settings."""
    values = {}
    for logical, source in SECRET_VALUES.items():
        if isinstance(source, str):
            if source in settings:
                values[logical] = settings[source]
        else:
            values[logical] = json.dumps({field: settings.get(name, "") for field, name in source.items()})
    return values


#: Settings in SECRET_VALUES that are identifiers rather than secrets (their defaults are no risk).
NOT_SECRET = frozenset({"PipedriveUser", "SalesforceOrgId"})


def dev_secret_defaults() -> list[str]:
    """The printed development values of every secret: a deployed stack must hold none of them."""
    settings: list[str] = []
    for source in SECRET_VALUES.values():
        settings += [source] if isinstance(source, str) else list(source.values())
    return sorted(PARAMETER_ENVIRONMENT[name][1] for name in settings if name not in NOT_SECRET)


#: A guard against a clock move that would never end (work that keeps putting work due at once).
MAX_CLOCK_STEPS = 10_000
#: Due work this far behind the clock is not being released: the move stops and says so.
STUCK_AFTER = timedelta(minutes=10)


class StuckDueWork(RuntimeError):
    """Moving the clock found due work the minute tick does not release."""


def local_parameters(environ: dict[str, str], port: int) -> tuple[dict[str, str], list[str]]:
    """Template parameters from the environment, and a line per setting saying where it came from."""
    values, lines = {}, []
    for parameter, (variable, template) in PARAMETER_ENVIRONMENT.items():
        given = environ.get(variable)
        default = template.format(port=port)
        values[parameter] = given if given else default
        lines.append(f"{variable}={'(set)' if given else default + ' (default)'}")
    return values, lines


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Subscription:
    """A queue feeding a function, as an SQS event source (or a local bridge for a bus rule)."""

    function: str
    queue_url: str
    queue_arn: str
    batch_size: int
    report_failures: bool
    direct_eventbridge: bool = False


@dataclass
class ScheduledInvocation:
    function: str
    name: str
    schedule: Schedule
    payload: dict[str, Any]
    last_checked: datetime
    anchor: datetime
    #: Its name in AWS: an EventBridge Scheduler schedule's, or a rule's when ``rule`` (SAM's ``Schedule``).
    aws_name: str = ""
    rule: bool = False


@dataclass
class Activity:
    """What went wrong in the functions since the stack started (for tests and debugging)."""

    failures: list[str] = field(default_factory=list)


class LocalStack:
    def __init__(
        self,
        template_path: Path,
        *,
        port: int = 3000,
        parameters: dict[str, str] | None = None,
        say: Callable[[str], None] = print,
        retry_delay_seconds: int = 1,
        poll_interval: float = 0.05,
        log_requests: bool = True,
        start_at: datetime | None = None,
        meter: bool | None = None,
    ) -> None:
        self.log_requests = log_requests
        self.template_path = template_path
        self.port = port
        self.parameters = parameters or {}
        self.say = say
        self.retry_delay_seconds = retry_delay_seconds
        self.poll_interval = poll_interval
        self.clock = kindling_clock.OffsetClock(start_at)
        self.activity = Activity()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._moto: Any = None
        self.ses: LocalSes | None = None
        self._server: BaseWSGIServer | None = None
        self._subscriptions: list[Subscription] = []
        self._schedules: list[ScheduledInvocation] = []
        self._schedule_lock = threading.Lock()
        self._moving = threading.Lock()
        self._pump_idle = threading.Event()
        self.webhooks: list[dict[str, Any]] = []
        #: The capacity meter (``meter.py``): on with ``meter=True``, or KINDLING_METER=1 when not given.
        metering = os.environ.get("KINDLING_METER") == "1" if meter is None else meter
        self.meter: Meter | None = Meter() if metering else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- start and stop --------------------------------------------------------
    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's and our request logs
        self._moto = EmbeddedAws(meter=self.meter).start()
        self.endpoint = self._moto.endpoint
        self.say(f"starting the embedded AWS (moto) on {self.endpoint.removeprefix('http://')}")
        base_environment = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "POWERTOOLS_METRICS_DISABLED": "true",
        }
        os.environ.update(base_environment)
        aws.reset()
        kindling_clock.install(self.clock)

        import boto3

        self.session = boto3.session.Session(region_name=REGION)
        self.template = Template.from_file(self.template_path, self.parameters, endpoint=self.endpoint)
        self.say(f"creating resources from {self.template_path.name}")
        provision(
            self.template,
            self.session,
            lambda line: self.say(f"  {line}"),
            secret_values=secret_strings(self.parameters),
        )
        self._apply_config_dir()
        config_sets = list(self.template.of_type("AWS::SES::ConfigurationSet"))
        self.ses = (
            LocalSes(
                self.session, self.table_name, self.template.names[config_sets[0]], self._moto.email_tags
            )
            if config_sets and self.template.of_type("AWS::DynamoDB::Table")
            else None
        )

        specs = functions(self.template)
        self.say(
            "the Lambda layer: pip install of shared/requirements.txt (built once, kept until it changes)"
        )
        path = lambda_path(self.template.root / "build" / "lambda")
        self.runtime = LocalRuntime(specs, base_environment, path, self.meter)
        for name, millis in self.runtime.start().items():
            self.say(f"  function {name}: own process, CodeUri + layer + boto3 (cold start {millis} ms)")
        self._wire_event_sources(specs)

        self.gateway = Gateway(
            self.template, self.runtime.invoke, self._local_routes(), self._report_error, self._log_request
        )
        self._server = make_server("127.0.0.1", self.port, self.gateway, threaded=True)
        self.port = self._server.server_port
        self._spawn("http", self._server.serve_forever)
        self._spawn("queues", self._pump_loop)
        self._spawn("schedules", self._schedule_loop)
        if self.meter is not None:
            self.say(f"capacity meter on (KINDLING_METER=1): GET {self.url}/_local/meter")
        self.say(f"kindling is listening on {self.url}")

    def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop serving, give work in flight ``grace_seconds`` in all to finish, then stop moto.

        The threads are daemons: one still inside a slow invocation is left to die with the
        process rather than hold up Ctrl-C (its message returns to its queue, as in AWS).
        """
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        deadline = time.monotonic() + grace_seconds
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        runtime: LocalRuntime | None = getattr(self, "runtime", None)  # None when the start failed early
        if runtime is not None:
            runtime.stop()
        if self._moto is not None:
            self._moto.stop()
        kindling_clock.install(kindling_clock.SystemClock())

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"kindling-{name}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _log_request(self, method: str, path: str, status: int, millis: float) -> None:
        if self.log_requests:
            self.say(f"{method} {path} -> {status} ({millis:.0f} ms)")

    def _report_error(self, function: str, exc: BaseException) -> None:
        lines = [line for line in str(exc).splitlines() if line.strip()] or [""]
        # A failed batch's message holds every record's traceback: its last line is the cause.
        summary = lines[0] if len(lines) == 1 else f"{lines[0]} ... {lines[-1].strip()}"
        self.activity.failures.append(f"{function}: {type(exc).__name__}: {summary}")
        self.say(f"! {function} failed: {type(exc).__name__}: {summary}")
        if os.environ.get("KINDLING_LOCAL_TRACEBACKS"):
            traceback.print_exception(exc)

    # --- event sources -------------------------------------------------------
    def _wire_event_sources(self, specs: list[Any]) -> None:
        sqs = self.session.client("sqs")
        events = self.session.client("events")
        now = self.clock.now()
        for spec in specs:
            for event_name, event in spec.events.items():
                kind = event.get("Type")
                props = self.template.resolve(event.get("Properties") or {})
                if kind == "SQS":
                    arn = props["Queue"]
                    name = arn.rsplit(":", 1)[-1]
                    self._subscriptions.append(
                        Subscription(
                            function=spec.logical_id,
                            queue_url=sqs.get_queue_url(QueueName=name)["QueueUrl"],
                            queue_arn=arn,
                            batch_size=min(int(props.get("BatchSize", 10)), 10),
                            report_failures="ReportBatchItemFailures"
                            in (props.get("FunctionResponseTypes") or []),
                        )
                    )
                    self.say(f"  {name} -> {spec.logical_id}")
                elif kind == "EventBridgeRule":
                    # Bus straight to a function: a private queue stands in for Lambda's own delivery.
                    name = f"{self.template.stack_name}-{spec.logical_id}-{event_name}"[:64]
                    url = sqs.create_queue(QueueName=name)["QueueUrl"]
                    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                        "QueueArn"
                    ]
                    bus = props.get("EventBusName", "default")
                    events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(props["Pattern"]))
                    events.put_targets(Rule=name, EventBusName=bus, Targets=[{"Id": "local", "Arn": arn}])
                    self._subscriptions.append(Subscription(spec.logical_id, url, arn, 1, False, True))
                    if self.meter is not None:  # Lambda's own delivery in AWS: no SQS request
                        self.meter.not_billed_queues.add(name)
                    self.say(f"  rule {event_name} -> {spec.logical_id}")
                elif kind in ("ScheduleV2", "Schedule"):
                    if props.get("State", "ENABLED") != "ENABLED" or props.get("Enabled") is False:
                        continue
                    expression = props.get("ScheduleExpression") or props.get("Schedule")
                    try:
                        schedule = Schedule.parse(str(expression))
                    except ScheduleError as exc:
                        raise TemplateError(f"{spec.logical_id}.{event_name}: {exc}") from exc
                    payload = json.loads(props["Input"]) if props.get("Input") else {}
                    aws_name = f"{self.template.stack_name}-{spec.logical_id}-{event_name}"[:64]
                    self._schedules.append(
                        ScheduledInvocation(
                            spec.logical_id,
                            event_name,
                            schedule,
                            payload,
                            now,
                            now,
                            aws_name=aws_name,
                            rule=kind == "Schedule",
                        )
                    )
                    self.say(f"  schedule {expression} -> {spec.logical_id}")

    # --- queues --------------------------------------------------------------
    def _pump_loop(self) -> None:
        sqs = self.session.client("sqs")
        while not self._stop.is_set():
            busy = False
            for subscription in self._subscriptions:
                try:
                    busy |= self._pump(sqs, subscription)
                except Exception as exc:  # keep pumping the other queues
                    self._report_error(subscription.function, exc)
            if self.ses is not None:
                try:
                    busy |= self.ses.publish_events(self.clock.now()) > 0
                except Exception as exc:
                    self._report_error("local SES", exc)
            if busy:
                self._pump_idle.clear()
            else:
                self._pump_idle.set()
                self._stop.wait(self.poll_interval)

    def _pump(self, sqs: Any, subscription: Subscription) -> bool:
        response = sqs.receive_message(
            QueueUrl=subscription.queue_url,
            MaxNumberOfMessages=subscription.batch_size,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        )
        messages = response.get("Messages", [])
        if not messages:
            return False
        self._pump_idle.clear()
        if subscription.direct_eventbridge:
            failed = set()
            for message in messages:
                try:
                    self.runtime.invoke(subscription.function, json.loads(message["Body"]))
                except Exception as exc:
                    self._report_error(subscription.function, exc)
                    failed.add(message["MessageId"])
        else:
            if self.meter is not None:
                self.meter.add_batch(subscription.function, len(messages))
            failed = self._invoke_batch(subscription, messages)
        for message in messages:
            if message["MessageId"] in failed:
                # Retried after a short delay here, rather than the queue's full visibility timeout.
                sqs.change_message_visibility(
                    QueueUrl=subscription.queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=self.retry_delay_seconds,
                )
            else:
                sqs.delete_message(QueueUrl=subscription.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return True

    def _invoke_batch(self, subscription: Subscription, messages: list[dict[str, Any]]) -> set[str]:
        event = sqs_event(sqs_record_of(m, subscription.queue_arn) for m in messages)
        try:
            result = self.runtime.invoke(subscription.function, event)
        except Exception as exc:
            self._report_error(subscription.function, exc)
            return {m["MessageId"] for m in messages}
        if subscription.report_failures and isinstance(result, dict):
            return {f["itemIdentifier"] for f in result.get("batchItemFailures") or []}
        return set()

    def settle(self, timeout: float = 15.0) -> dict[str, int]:
        """Wait until every queue a function reads is empty; what is still pending if not."""
        sqs = self.session.client("sqs")
        deadline = time.monotonic() + timeout
        while True:
            pending = {}
            for subscription in self._subscriptions:
                attrs = sqs.get_queue_attributes(
                    QueueUrl=subscription.queue_url,
                    AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
                )["Attributes"]
                count = int(attrs["ApproximateNumberOfMessages"]) + int(
                    attrs["ApproximateNumberOfMessagesNotVisible"]
                )
                if count:
                    pending[subscription.queue_url.rsplit("/", 1)[-1]] = count
            if not pending and self._pump_idle.is_set():
                return {}
            if time.monotonic() > deadline:
                return pending
            time.sleep(self.poll_interval)

    # --- schedules and the clock -------------------------------------------------
    def _schedule_loop(self) -> None:
        while not self._stop.wait(1.0):
            self.run_due_schedules()

    def run_due_schedules(self) -> list[str]:
        """Run each schedule that fired since it was last checked, once, as of its latest fire time."""
        ran = []
        with self._schedule_lock:
            now = self.clock.now()
            for item in self._schedules:
                fired = item.schedule.last_fire(item.last_checked, now, item.anchor)
                item.last_checked = now
                if fired is None:
                    continue
                event = dict(item.payload or scheduled_event(item.aws_name, fired, rule=item.rule))
                try:
                    self.runtime.invoke(item.function, event)
                    ran.append(f"{item.function}.{item.name}")
                except Exception as exc:
                    self._report_error(item.function, exc)
        return ran

    def move_clock(self, *, advance_seconds: float | None = None, to: datetime | None = None) -> list[str]:
        """Move to ``to`` (or by ``advance_seconds``) as time would pass in AWS, one due instant at a time.

        The stack steps to each instant at which something falls due: due work (deferred sends,
        program steps) at the first firing of the minute tick at or after it, and every other
        schedule's firing times. At each it runs what fired and drains the queues, whose work
        may put new items due before the target. Its cost follows the work that falls due,
        not the minutes skipped: a week with nothing due is one step.
        """
        now = self.clock.now()
        target = to if to is not None else now + timedelta(seconds=advance_seconds or 0)
        if target.tzinfo is None:
            raise ValueError("a time must carry its offset, e.g. 2026-01-05T09:00:00Z")
        if target < now:
            raise ValueError(f"the clock only moves forward: it is {kindling_clock.isoformat(now)} already")
        ran: list[str] = []
        with self._moving:
            for _ in range(MAX_CLOCK_STEPS):
                self.settle()
                instant = self._next_instant(self.clock.now(), target)
                if instant is None:
                    break
                self.clock.catch_up_to(instant)
                ran += self.run_due_schedules()
            else:
                raise RuntimeError(
                    f"more than {MAX_CLOCK_STEPS} due instants before {target}: move in shorter steps"
                )
            self.clock.catch_up_to(target)
            ran += self.run_due_schedules()
            self.settle()
        return ran

    def _next_instant(self, now: datetime, target: datetime) -> datetime | None:
        """The earliest moment in (now, target] at which a schedule fires with something to do.

        Other schedules' next firings come first: the due index is then read only up to the
        earliest of them, so a step reads a day of hour buckets at most, not the whole jump.
        """
        with self._schedule_lock:
            schedules = list(self._schedules)
        firings = [
            fire
            for item in schedules
            if not item.schedule.is_tick
            for fire in [next(item.schedule.fire_times(item.last_checked, target, item.anchor), None)]
            if fire is not None
        ]
        bound = min([*firings, target])
        due_at = self._earliest_due(now, bound)
        if due_at is not None and due_at < now - STUCK_AFTER:
            # The tick ran past it and it is still there: stepping on would loop to the target.
            raise StuckDueWork(
                f"due work of {kindling_clock.isoformat(due_at)} is still waiting at "
                f"{kindling_clock.isoformat(now)}: DueWorkFunction is not releasing it (see its failures)"
            )
        if due_at is not None:
            for item in schedules:
                if item.schedule.is_tick:
                    after = max(item.last_checked, due_at - timedelta(microseconds=1))
                    fire = next(item.schedule.fire_times(after, target, item.anchor), None)
                    if fire is not None:
                        firings.append(fire)
        return min(firings, default=None)

    def _earliest_due(self, now: datetime, target: datetime) -> datetime | None:
        """When the minute tick's earliest waiting item falls due, if by ``target``."""
        from kindling.adapters.due_store import DynamoDueStore
        from kindling.programs.due import hours_between

        if not self.template.of_type("AWS::DynamoDB::Table"):
            return None
        store = DynamoDueStore(self.table_name, self.session.client("dynamodb"))
        try:
            cursor = store.cursor()
            start = min(cursor, now) if cursor else now
            for hour in hours_between(start, target):
                items = store.due_in_hour(hour, until=target)
                if items:
                    return min(item.due_at for item in items)
        except ClientError:  # a table without the due index (a test fixture's): nothing is ever due
            return None
        return None

    # --- configuration ---------------------------------------------------------
    @property
    def table_name(self) -> str:
        tables = list(self.template.of_type("AWS::DynamoDB::Table"))
        return self.template.names["Table" if "Table" in tables else tables[0]]

    def _apply_config_dir(self) -> None:
        directory = self.template.root / "config"
        if not directory.is_dir() or not self.template.of_type("AWS::DynamoDB::Table"):
            return
        try:
            loaded = load_config(directory)
        except ConfigError as exc:
            raise TemplateError("config/ is not valid:\n  " + "\n  ".join(exc.problems)) from exc
        for line in self.apply_config(config_documents(loaded)):
            self.say(f"  {line}")

    def apply_config(self, documents: dict[str, dict[str, Any]]) -> list[str]:
        store = DynamoConfigStore(self.table_name, self.session.client("dynamodb"))
        lines = apply_config(store, documents, self.clock.now())
        sender = (documents.get("email.yaml") or {}).get("from_address")
        if sender:
            # SES sends only from verified identities; in moto, verifying is instant.
            self.session.client("sesv2").create_email_identity(EmailIdentity=sender)
            lines.append(f"SES identity {sender} verified")
        return lines

    # --- /_local routes --------------------------------------------------------
    def _local_routes(self) -> dict[tuple[str, str], Callable[[Request], Response]]:
        routes = self._meter_routes() if self.meter is not None else {}
        return routes | {
            ("GET", "/_local/clock"): self._get_clock,
            ("POST", "/_local/clock"): self._post_clock,
            ("POST", "/_local/settle"): self._post_settle,
            ("POST", "/_local/config"): self._post_config,
            ("POST", "/_local/programs"): self._post_program_state,
            ("POST", "/_local/metrics/rebuild"): self._post_metrics_rebuild,
            ("GET", "/_local/dlq"): self._get_dead_letters,
            ("POST", "/_local/dlq/redrive"): self._post_redrive,
            ("POST", "/_local/webhooks/sales"): self._receive_webhook,
            ("GET", "/_local/webhooks"): lambda request: _json(200, {"received": self.webhooks}),
            ("GET", "/_local/outbox"): self._get_outbox,
            ("GET", "/_local/health"): lambda request: _json(200, {"ok": True}),
            ("GET", "/_local/aws"): lambda request: _json(200, self.describe()),
        }

    def _meter_routes(self) -> dict[tuple[str, str], Callable[[Request], Response]]:
        """``GET /_local/meter``: the capacity meter's counters; ``POST /_local/meter/reset`` zeroes them."""
        meter = self.meter
        assert meter is not None

        def reset(request: Request) -> Response:
            meter.reset()
            return _json(200, {"reset": True})

        return {
            ("GET", "/_local/meter"): lambda request: _json(200, meter.snapshot()),
            ("POST", "/_local/meter/reset"): reset,
        }

    def outbox(self, since: int = 0) -> list[dict[str, Any]]:
        return self.ses.outbox(since) if self.ses is not None else []

    def _get_outbox(self, request: Request) -> Response:
        """Every email SES accepted, or those from the ``since``-th on (``?since=N``)."""
        since = request.args.get("since", "0")
        if not since.isdigit():
            return _json(
                400, {"error": "invalid_request", "problems": ["since: a number of emails, 0 or more"]}
            )
        return _json(200, {"messages": self.outbox(int(since))})

    def describe(self) -> dict[str, Any]:
        """Where everything is, as CloudFormation would tell of a deployed stack (for ``kindling doctor``).

        Outputs are the template's, resolved, with ApiUrl this stack's own URL; physical ids are
        what CloudFormation reports (a queue's URL, a name otherwise); functions are counted failures.
        """
        outputs = {}
        for name, output in (self.template.document.get("Outputs") or {}).items():
            try:
                outputs[name] = str(self.template.resolve(output["Value"]))
            except TemplateError:
                continue  # what the local stack cannot resolve (a dashboard URL) is left out
        outputs["ApiUrl"] = self.url
        resources = {}
        for logical, resource in self.template.resources.items():
            kind = resource["Type"]
            if kind == "AWS::SQS::Queue":
                physical = self.template.queue_url(logical)
            else:
                physical = self.template.names[logical]
            if kind == "AWS::Serverless::Function":
                kind = "AWS::Lambda::Function"
            resources[logical] = {"type": kind, "physical_id": physical}
        errors = dict.fromkeys(self.runtime.specs, 0)
        for failure in self.activity.failures:
            function = failure.split(":", 1)[0]
            errors[function] = errors.get(function, 0) + 1
        return {
            "endpoint": self.endpoint,
            "outputs": outputs,
            "resources": resources,
            "function_errors": errors,
            "dev_defaults": dev_secret_defaults(),
            "aws_requests": self._moto.requests if self._moto is not None else 0,
        }

    def _post_config(self, request: Request) -> Response:
        """Apply documents the CLI validated (``kindling config apply --local``)."""
        from kindling_ops.config import FILES

        try:
            body = json.loads(request.get_data() or b"{}")
            documents = {}
            for name, document in body.items():
                if name not in FILES:
                    raise ValueError(f"{name}: not a config file kindling knows")
                documents.update(config_documents({name: FILES[name].model_validate(document)}))
        except (ValueError, AttributeError) as exc:
            return _json(400, {"error": "invalid_request", "problems": [str(exc)]})
        return _json(200, {"applied": self.apply_config(documents)})

    def _post_program_state(self, request: Request) -> Response:
        """Pause or resume a program (what `kindling programs pause|resume --local` sends)."""
        from kindling.adapters.program_store import DynamoProgramStore
        from kindling_ops.programs import change_program_state

        try:
            body = json.loads(request.get_data() or b"{}")
            line = change_program_state(
                DynamoProgramStore(self.table_name, self.session.client("dynamodb")),
                str(body.get("program", "")),
                str(body.get("action", "")),
                self.clock.now(),
            )
        except ValueError as exc:
            return _json(400, {"error": "invalid_request", "problems": [str(exc)]})
        return _json(200, {"result": line})

    def _post_metrics_rebuild(self, request: Request) -> Response:
        """Rebuild every metric from the logged events (what `kindling metrics rebuild --local` sends)."""
        from kindling.adapters.metrics_store import DynamoMetricsStore
        from kindling.metrics.rebuild import rebuild_metrics

        window = timedelta(days=float(self.template.parameters["AttributionWindowDays"]))
        store = DynamoMetricsStore(self.table_name, self.session.client("dynamodb"))
        # Handlers here finish well within a second of reading the generation.
        return _json(200, {"result": rebuild_metrics(store, window, drain=timedelta(seconds=1)).line()})

    def _get_dead_letters(self, request: Request) -> Response:
        from kindling_ops.dlq import from_template, inspect

        sqs = self.session.client("sqs")
        return _json(200, {"queues": [inspect(sqs, q) for q in from_template(self.template)]})

    def _post_redrive(self, request: Request) -> Response:
        from kindling_ops.dlq import from_template, redrive

        body = json.loads(request.get_data() or b"{}")
        queues = {q.name: q for q in from_template(self.template)}
        name = body.get("queue") if isinstance(body, dict) else None
        if name not in queues:
            return _json(400, {"error": "invalid_request", "problems": [f"queue: one of {sorted(queues)}"]})
        return _json(
            200,
            {"result": f"{name}: {redrive(self.session.client('sqs'), queues[name])} message(s) redriven"},
        )

    def _receive_webhook(self, request: Request) -> Response:
        """Stands in for the sales team's CRM when no KINDLING_HANDOFF_URL is given."""
        self.webhooks.append(
            {
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": request.get_data(as_text=True),
                "received_at": kindling_clock.isoformat(self.clock.now()),
            }
        )
        return _json(200, {"received": True})

    def _get_clock(self, request: Request) -> Response:
        now = self.clock.now()
        return _json(200, {"now": kindling_clock.isoformat(now), "epoch": int(now.timestamp())})

    def _post_clock(self, request: Request) -> Response:
        try:
            body = json.loads(request.get_data() or b"{}")
            if not isinstance(body, dict):
                raise ValueError("send a JSON object")
            if "now" in body:
                moment = datetime.fromisoformat(str(body["now"]).replace("Z", "+00:00"))
                ran = self.move_clock(to=moment)
            elif "advance_seconds" in body:
                seconds = body["advance_seconds"]
                if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                    raise ValueError("advance_seconds must be a number of seconds, 0 or more")
                ran = self.move_clock(advance_seconds=float(seconds))
            else:
                raise ValueError('send {"advance_seconds": N} or {"now": "<ISO-8601>"}')
        except ValueError as exc:
            return _json(400, {"error": "invalid_request", "problems": [str(exc)]})
        except StuckDueWork as exc:
            return _json(
                409,
                {"error": "stuck", "message": str(exc), "now": kindling_clock.isoformat(self.clock.now())},
            )
        return _json(200, {"now": kindling_clock.isoformat(self.clock.now()), "schedules_run": ran})

    def _post_settle(self, request: Request) -> Response:
        timeout = float(request.args.get("timeout", "15"))
        pending = self.settle(timeout)
        return _json(200 if not pending else 504, {"settled": not pending, "pending": pending})


def _json(status: int, payload: Any) -> Response:
    return Response(json.dumps(payload), status=status, content_type="application/json")
