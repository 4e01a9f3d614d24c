"""``kindling``: the operator's command line (the local stack now; config, reports and redrive later)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

DEFAULT_TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config"


def _local(args: argparse.Namespace) -> int:
    from kindling.kernel import clock
    from kindling_ops.layer import LayerBuildError
    from kindling_ops.local.runtime import FunctionImportError
    from kindling_ops.local.stack import LocalStack, local_parameters
    from kindling_ops.local.template import TemplateError

    port_text = os.environ.get("PORT", "3000")
    if not port_text.isdigit():
        print(f"kindling: PORT must be a number, not {port_text!r}", file=sys.stderr)
        return 2
    port = args.port if args.port is not None else int(port_text)
    start_at = args.start_at
    if start_at is None and os.environ.get("KINDLING_START_AT"):
        try:
            start_at = _moment(os.environ["KINDLING_START_AT"])
        except argparse.ArgumentTypeError as exc:
            print(f"kindling: KINDLING_START_AT: {exc}", file=sys.stderr)
            return 2
    parameters, lines = local_parameters(dict(os.environ), port)
    print(f"PORT={port}{'' if 'PORT' in os.environ or args.port else ' (default)'}")
    for line in lines:
        print(line)
    stack = LocalStack(
        args.template,
        port=port,
        parameters=parameters,
        say=lambda s: print(s, flush=True),
        start_at=start_at,
    )
    if start_at is not None:
        print(f"the clock starts at {clock.isoformat(start_at)} and runs on from there")
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        stack.start()
    except (TemplateError, FileNotFoundError, OSError, FunctionImportError, LayerBuildError) as exc:
        print(f"kindling: cannot start the local stack: {exc}", file=sys.stderr)
        stack.stop()
        return 1
    print(try_this(stack.url, parameters["WriteKey"], parameters["AdminToken"]), flush=True)
    print("Ctrl-C stops it.", flush=True)
    # Woken twice a second: Python runs a signal's handler in the main thread only, and a signal
    # the kernel hands to another of the stack's threads does not interrupt a wait without a
    # timeout, so Ctrl-C or SIGTERM could go unheard for ever.
    while not stopping.wait(0.5):
        pass
    print("stopping...", flush=True)
    stack.stop()
    print("stopped.", flush=True)
    return 0


def try_this(url: str, write_key: str, admin_token: str) -> str:
    """What to do first with a stack that just started: each line works when pasted."""
    return f"""
Try this (in another terminal):
  # a visitor identifies: a lead is created, scored, and enters the welcome series
  curl -s -u {write_key}: {url}/v1/identify -H 'content-type: application/json' \\
    -d '{{"userId":"u-1","traits":{{"email":"ada@example.com","first_name":"Ada","title":"VP Marketing"}}}}'
  # the lead, its score and timeline
  curl -s '{url}/v1/leads?email=ada@example.com' -H 'Authorization: Bearer {admin_token}'
  # let two days pass (emails wait for the send window), then read the outbox
  curl -s -X POST {url}/_local/clock -d '{{"advance_seconds": 172800}}'
  curl -s {url}/_local/outbox
  # in a browser, the reports page (it asks for the admin token above)
  {url}/v1/reports
"""


def _load_config(directory: Path) -> dict | None:
    """The validated config, or None after printing every problem."""
    from kindling_ops.config import ConfigError, load

    try:
        return load(directory)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def _post_local(port: int | None, path: str, body: object, timeout: float = 30) -> dict | None:
    """POST to the running local stack; its JSON answer, or None after saying what went wrong."""
    import json
    import urllib.error
    import urllib.request

    port = port if port is not None else int(os.environ.get("PORT", "3000"))
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        problems = json.loads(exc.read() or b"{}").get("problems") or [exc.reason]
        print(f"kindling: {problems[0]}", file=sys.stderr)
    except (urllib.error.URLError, OSError) as exc:
        print(f"kindling: cannot reach the local stack on port {port}: {exc}", file=sys.stderr)
    return None


def _config_validate(args: argparse.Namespace) -> int:
    from kindling_ops.config import warnings

    loaded = _load_config(args.dir)
    if loaded is None:
        return 1
    for name, model in loaded.items():
        print(f"{args.dir / name}: valid ({_summary(model)})")
    for warning in warnings(args.dir, loaded):
        print(f"warning: {warning}")
    return 0


def _summary(model: object) -> str:
    from kindling.crm.config import CrmConfig
    from kindling.email.config import EmailSettings, EmailTemplates
    from kindling.programs.config import Programs, Segments
    from kindling.scoring.config import ScoringConfig

    if isinstance(model, ScoringConfig):
        return f"{len(model.engagement.rules)} engagement rules, {len(model.fit.rules)} fit rules"
    if isinstance(model, EmailSettings):
        cap, window = model.frequency_cap, model.send_window
        return (
            f"from {model.from_address}, at most {cap.max_emails} emails per {cap.per_days} days, "
            f"{_days(window.days)} {window.start}-{window.end} ({window.default_timezone} by default)"
        )
    if isinstance(model, EmailTemplates):
        names = model.names()
        return f"{len(names)} template{'' if len(names) == 1 else 's'}: {', '.join(names)}"
    if isinstance(model, Programs):
        return _named(sorted(model.programs), "program")
    if isinstance(model, Segments):
        return _named([s.id for s in model.segments], "segment")
    if isinstance(model, CrmConfig):
        mapped = ", ".join(f"{provider} {len(names)}" for provider, names in model.stages.items())
        quiet = ", ".join(model.quiet_stages) or "none"
        return f"stages mapped: {mapped or 'none'}; quiet stages: {quiet}"
    return type(model).__name__


def _named(names: list[str], what: str) -> str:
    """``2 programs: a, b``; ``no programs``."""
    if not names:
        return f"no {what}s"
    return f"{len(names)} {what}{'' if len(names) == 1 else 's'}: {', '.join(names)}"


def _days(days: Iterable[str]) -> str:
    """``mon-fri``, ``mon,wed,fri``: runs of consecutive days collapsed."""
    from kindling.email.config import DAYS

    numbers = sorted(DAYS.index(d) for d in days)
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][-1] + 1:
            runs[-1].append(number)
        else:
            runs.append([number])
    return ",".join(
        f"{DAYS[run[0]]}-{DAYS[run[-1]]}" if len(run) > 2 else ",".join(DAYS[n] for n in run) for run in runs
    )


def _config_apply(args: argparse.Namespace) -> int:
    from kindling_ops.config import documents

    loaded = _load_config(args.dir)
    if loaded is None:
        return 1
    docs = documents(loaded)
    if args.local:
        answer = _post_local(args.port, "/_local/config", docs)
        lines = answer["applied"] if answer else None
    else:
        lines = _apply_to_aws(docs, args.table, args.stack)
    if lines is None:
        return 1
    for line in lines:
        print(line)
    return 0


def _apply_to_aws(documents: dict[str, dict], table: str | None, stack: str | None) -> list[str] | None:
    import boto3

    from kindling.adapters.config_store import DynamoConfigStore
    from kindling.kernel import clock
    from kindling_ops.config import apply

    table = table or _stack_table(stack)
    if table is None:
        return None
    return apply(DynamoConfigStore(table, boto3.client("dynamodb")), documents, clock.current().now())


def _programs(args: argparse.Namespace) -> int:
    if args.local:
        answer = _post_local(args.port, "/_local/programs", {"program": args.program, "action": args.action})
        if answer is None:
            return 1
        print(answer["result"])
        return 0
    import boto3

    from kindling.adapters.program_store import DynamoProgramStore
    from kindling.kernel import clock
    from kindling_ops.programs import change_program_state

    table = args.table or _stack_table(args.stack)
    if table is None:
        return 1
    store = DynamoProgramStore(table, boto3.client("dynamodb"))
    print(change_program_state(store, args.program, args.action, clock.current().now()))
    return 0


def _dlq(args: argparse.Namespace) -> int:
    import json

    if args.local:
        if args.dlq_command == "list":
            import urllib.request

            port = args.port if args.port is not None else int(os.environ.get("PORT", "3000"))
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_local/dlq", timeout=30) as response:
                    queues = json.loads(response.read())["queues"]
            except OSError as exc:
                print(f"kindling: cannot reach the local stack on port {port}: {exc}", file=sys.stderr)
                return 1
        else:
            answer = _post_local(args.port, "/_local/dlq/redrive", {"queue": args.queue})
            if answer is None:
                return 1
            print(answer["result"])
            return 0
    else:
        import boto3

        from kindling_ops.dlq import DeadLetters, inspect, redrive

        stack = boto3.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0]
        sqs = boto3.client("sqs")
        known = {}
        for output in stack.get("Outputs", []):
            if output["OutputKey"].endswith("DeadLetterQueueUrl"):
                url = output["OutputValue"]
                sources = sqs.list_dead_letter_source_queues(QueueUrl=url).get("queueUrls", [])
                if sources:
                    name = output["OutputKey"].removesuffix("Url")
                    known[name] = DeadLetters(name, url, sources[0])
        if args.dlq_command == "redrive":
            if args.queue not in known:
                print(f"kindling: queue must be one of {sorted(known)}", file=sys.stderr)
                return 2
            print(f"{args.queue}: {redrive(sqs, known[args.queue])} message(s) redriven")
            return 0
        queues = [inspect(sqs, q) for q in known.values()]
    for queue in queues:
        print(f"{queue['queue']}: {queue['messages']} message(s)")
        for message in queue["sample"]:
            what = f"{message['receive_count']}x {message['what']}"
            print(f"  {message['message_id']} received {what}: {message['body']}")
    return 0


def _stack_table(stack: str | None) -> str | None:
    import boto3

    if stack is None:
        print("kindling: give --local, --table NAME or --stack NAME", file=sys.stderr)
        return None
    outputs = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0].get("Outputs", [])
    table = next((o["OutputValue"] for o in outputs if o["OutputKey"] == "TableName"), None)
    if table is None:
        print(f"kindling: stack {stack} has no TableName output", file=sys.stderr)
    return table


def format_table(headers: list[str], rows: list[list[object]]) -> str:
    """Columns aligned: text left, numbers right; ``-`` for a missing value."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [
        all(isinstance(row[i], int | float) or row[i] is None for row in rows) for i in range(len(headers))
    ]

    def line(values: list[str]) -> str:
        padded = [v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True)]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _percent(rate: float | None) -> str | None:
    return None if rate is None else f"{rate:.1%}"


def _email_rows(rows: list[dict], by_program: bool) -> tuple[list[str], list[list[object]]]:
    headers = ["program"] if by_program else ["program", "step", "template"]
    headers += [
        "sent",
        "deliv",
        "bounce",
        "skip",
        "defer",
        "opened",
        "clicked",
        "unsub",
        "adv_last",
        "adv_any",
    ]
    table = []
    for r in rows:
        name = [r["program"]] if by_program else [r["program"], r["step"], r["template"]]
        table.append(
            [
                *name,
                *(r["sent"], r["delivered"], r["bounced"]["total"], r["skipped"]["total"], r["deferred"]),
                *(r["opened_unique"], r["clicked_unique"], r["unsubscribed"]),
                *(r["stage_advances_last_touch"], r["stage_advances_any_touch"]),
            ]
        )
    return headers, table


def _funnel_rows(label: str, groups: list[dict]) -> list[list[object]]:
    rows: list[list[object]] = []
    for group in groups:
        closed = {"customer": group["closed"]["won"], "closed_lost": group["closed"]["lost"]}
        for stage in group["stages"]:
            deal = closed.get(stage["stage"])
            rows.append(
                [
                    group["value"] if group["value"] is not None else label,
                    *(stage["stage"], stage["entered"], _percent(stage["conversion_to_next"])),
                    *(stage["left"], stage["median_days_in_stage"]),
                    *((deal["count"], deal["amount"]) if deal else (None, None)),
                ]
            )
    return rows


FUNNEL_HEADERS = ["stage", "entered", "to_next", "left", "median_days", "closed", "amount"]


def format_report(kind: str, report: dict) -> str:
    """The emails, funnel or program report (as the API returns it) as text tables."""
    if kind == "emails":
        headers, rows = _email_rows(report["rows"], report.get("by") == "program")
        return format_table(headers, rows)
    if kind == "program":
        headers, rows = _email_rows(report["emails"], False)
        parts = [
            f"program {report['program']}, {report['from']} to {report['to']}",
            format_table(headers, rows),
        ]
        if report["funnel"] is not None:
            parts += [
                "leads whose last email before a stage move came from this program:",
                format_table(
                    ["program", *FUNNEL_HEADERS], _funnel_rows(report["program"], [report["funnel"]])
                ),
            ]
        return "\n\n".join(parts)
    by = report.get("by")
    return format_table([by or "funnel", *FUNNEL_HEADERS], _funnel_rows("all", report["groups"]))


def _report(args: argparse.Namespace) -> int:
    import json
    import urllib.error
    import urllib.parse
    import urllib.request

    token = args.token or os.environ.get("KINDLING_ADMIN_TOKEN")
    if not token:
        print("kindling: give --token or set KINDLING_ADMIN_TOKEN", file=sys.stderr)
        return 2
    if args.url:
        base = args.url.rstrip("/")
    else:
        base = (
            f"http://127.0.0.1:{args.port if args.port is not None else int(os.environ.get('PORT', '3000'))}"
        )
    query = {"from": args.start, "to": args.end}
    if args.by:
        query["by"] = args.by
    if args.kind == "program":
        if not args.program:
            print("kindling: give --program ID for the program report", file=sys.stderr)
            return 2
        path = f"programs/{urllib.parse.quote(args.program, safe='')}"
    else:
        path = args.kind
        if args.program:
            query["program"] = args.program
    request = urllib.request.Request(
        f"{base}/v1/reports/{path}?{urllib.parse.urlencode(query)}",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            report = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        problems = json.loads(exc.read() or b"{}").get("problems") or [exc.reason]
        print(f"kindling: {problems[0]}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"kindling: cannot reach {base}: {exc}", file=sys.stderr)
        return 1
    print(format_report(args.kind, report))
    return 0


def _crm_unmatched(args: argparse.Namespace) -> int:
    """Every page of ``GET /v1/crm/unmatched``: a table, or JSON lines with ``--json``."""
    import json

    from kindling_ops.admin_client import AdminApiError

    args.stack = None  # --local or --url only
    api = _target(args)
    if api is None:
        return 2
    cursor: str | None = None
    rows: list[dict[str, str]] = []
    while True:
        try:
            page = api.get("/v1/crm/unmatched", {"limit": "200", **({"cursor": cursor} if cursor else {})})
        except AdminApiError as exc:
            print(f"kindling: {exc}", file=sys.stderr)
            return 1
        for event in page["unmatched"]:
            if args.json:
                print(json.dumps(event))
            rows.append({k: str(event.get(k) or "") for k in UNMATCHED_COLUMNS})
        cursor = page.get("next_cursor")
        if not cursor:
            break
    if not args.json:
        if not rows:
            print("no unmatched CRM events: every CRM event found its lead")
            return 0
        widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in UNMATCHED_COLUMNS}
        print("  ".join(k.ljust(widths[k]) for k in UNMATCHED_COLUMNS).rstrip())
        for row in rows:
            print("  ".join(row[k].ljust(widths[k]) for k in UNMATCHED_COLUMNS).rstrip())
        print(f"{len(rows)} unmatched: each applies when a lead with its email or CRM id appears")
    return 0


UNMATCHED_COLUMNS = ("occurred_at", "provider", "kind", "object_id", "email", "stage")


def _target(args: argparse.Namespace) -> Any:
    """The admin API a data command talks to, or None after saying why not."""
    from kindling_ops.admin_client import AdminApiError, admin_api

    try:
        return admin_api(args.local, args.port, args.url, args.token, args.stack)
    except AdminApiError as exc:
        print(f"kindling: {exc}", file=sys.stderr)
        return None


def _import(args: argparse.Namespace) -> int:
    from kindling_ops.admin_client import AdminApiError
    from kindling_ops.import_command import fingerprint, run_import, summary
    from kindling_ops.importing import formats

    if args.format == "pinpoint-journey":
        return _convert_journey(args)
    if not (args.local or args.stack or args.url):
        print("kindling: give --local, --stack NAME or --url URL", file=sys.stderr)
        return 2
    sources = [args.file] + ([args.suppressions] if args.suppressions else [])
    for given in sources:
        if not str(given).startswith("s3://") and not Path(given).exists():
            print(f"kindling: {given}: no such file or folder", file=sys.stderr)
            return 2
    if args.suppressions and args.format in ("csv", "pinpoint"):
        print(
            f"kindling: --suppressions is for mautic and hubspot exports, not {args.format}", file=sys.stderr
        )
        return 2
    try:
        if args.format == "csv":
            mapping = dict(formats.load_mapping(Path(args.map))) if args.map else {}
            for pair in args.column or []:
                header, _, target = pair.partition("=")
                if not header or not _:
                    print(f"kindling: --column {pair!r}: write HEADER=TRAIT", file=sys.stderr)
                    return 2
                mapping[header] = target
            parsed = formats.read_csv(Path(args.file), mapping or None)
        elif args.format == "mautic":
            parsed = formats.read_mautic(
                Path(args.file), Path(args.suppressions) if args.suppressions else None
            )
        elif args.format == "hubspot":
            parsed = formats.read_hubspot(
                Path(args.file), Path(args.suppressions) if args.suppressions else None
            )
        else:
            parsed = formats.read_pinpoint(args.file)
    except (ValueError, OSError) as exc:
        print(f"kindling: {exc}", file=sys.stderr)
        return 2
    api = _target(args)
    if api is None:
        return 2
    results = (
        Path(args.results) if args.results else Path(f"{Path(str(args.file).rstrip('/')).name}.results.csv")
    )
    identity = fingerprint(
        sources, {"format": args.format, "enroll": args.enroll, "map": args.map, "column": args.column}
    )
    try:
        counts = run_import(
            api,
            parsed,
            source=args.format,
            results_path=results,
            identity=identity,
            dry_run=args.dry_run,
            enroll=args.enroll,
        )
    except AdminApiError as exc:
        print(f"\nkindling: {exc}\nrun the same command again to go on where it stopped", file=sys.stderr)
        return 1
    print(summary(counts, dict(parsed.skipped), args.dry_run, results))
    return 0


def _convert_journey(args: argparse.Namespace) -> int:
    """A Pinpoint journey (GetJourney's JSON) as a program and template stubs in ``--out``."""
    import json

    from kindling_ops.importing.pinpoint_journey import convert_journey, write_conversion

    out = Path(args.out or "converted")
    try:
        document = json.loads(Path(args.file).read_text(encoding="utf-8"))
        conversion = convert_journey(document)
        written = write_conversion(conversion, out)
    except (OSError, ValueError) as exc:  # unreadable, not JSON, not a journey, a file already there
        print(f"kindling: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    for segment in conversion.segments:
        print(f"needs segment {segment}: define it in config/segments.yaml")
    for hint in conversion.settings_hints:
        print(f"email settings: {hint}")
    for loss in conversion.unmapped:
        print(f"not mapped exactly: {loss}")
    print(f"review, copy into config/, then: kindling config validate ({len(conversion.unmapped)} to review)")
    return 0


def _suppressions(args: argparse.Namespace) -> int:
    import csv
    import json
    import urllib.parse

    from kindling_ops.admin_client import AdminApiError

    api = _target(args)
    if api is None:
        return 2
    by = getattr(args, "by", None) or f"{os.environ.get('USER', 'operator')}@{os.uname().nodename}"
    try:
        if args.suppressions_command == "add":
            answer = api.post("/v1/suppressions", {"email": args.email, "reason": args.reason, "by": by})
            print(
                ("added: " if answer["added"] else "already suppressed: ") + _describe(answer["suppression"])
            )
        elif args.suppressions_command == "remove":
            quoted = urllib.parse.quote(args.email, safe="")
            answer = api.post(f"/v1/suppressions/{quoted}/remove", {"note": args.note, "by": by})
            print(f"removed: {_describe(answer['removed'])}; by {by}: {args.note}")
        else:
            rows, after = [], None
            while True:
                page = api.get("/v1/suppressions", {"limit": "1000", **({"after": after} if after else {})})
                rows += page["suppressions"]
                after = page.get("next_after")
                if not after:
                    break
            if args.suppressions_command == "export" and args.format == "jsonl":
                for row in rows:
                    print(json.dumps(row))
            elif args.suppressions_command == "export":
                writer = csv.DictWriter(sys.stdout, fieldnames=("email", "reason", "at", "source", "by"))
                writer.writeheader()
                writer.writerows(rows)
            else:
                for row in rows:
                    print(_describe(row))
                print(f"{len(rows):,} suppressed addresses")
    except AdminApiError as exc:
        print(f"kindling: {exc}", file=sys.stderr)
        return 1
    return 0


def _describe(suppression: dict[str, Any]) -> str:
    by = f" by {suppression['by']}" if suppression.get("by") else ""
    since = suppression["at"][:10]
    return f"{suppression['email']}  {suppression['reason']}  since {since} ({suppression['source']}{by})"


def _person(args: argparse.Namespace) -> int:
    """One person's data: everything as JSON (``export``), or all of it removed (``erase``)."""
    import json
    import urllib.parse

    from kindling_ops.admin_client import AdminApiError

    api = _target(args)
    if api is None:
        return 2
    try:
        lead_id = args.lead
        if "@" in lead_id:
            lead_id = api.get("/v1/leads", {"email": lead_id})["lead"]["lead_id"]
        quoted = urllib.parse.quote(lead_id, safe="")
        if args.person_command == "export":
            print(json.dumps(api.get(f"/v1/leads/{quoted}/data"), indent=2))
            return 0
        by = args.by or f"{os.environ.get('USER', 'operator')}@{os.uname().nodename}"
        report = api.post(f"/v1/leads/{quoted}/erase", {"confirm": args.confirm, "by": by, "note": args.note})
    except AdminApiError as exc:
        print(f"kindling: {exc}", file=sys.stderr)
        return 1
    kept = "; its opt-out is kept as a keyed hash" if report["kept_opt_out"] else ""
    print(f"erased lead {report['lead_id']}: {report['erased_items']} items{kept}")
    return 0


def _export(args: argparse.Namespace) -> int:
    """Page through the export route and stream each record out as it comes."""
    import csv
    import json

    from kindling_ops.admin_client import AdminApiError

    if args.what == "person":  # the same as `kindling person export`
        if not args.person:
            print("kindling: export person needs the lead's email address or id", file=sys.stderr)
            return 2
        args.lead, args.person_command = args.person, "export"
        return _person(args)
    api = _target(args)
    if api is None:
        return 2
    if args.what == "activity" and not (args.start and args.end):
        print("kindling: export activity needs --from and --to", file=sys.stderr)
        return 2
    out = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115
    key = "leads" if args.what == "leads" else "events"
    query = {} if args.what == "leads" else {"from": args.start, "to": args.end}
    writer: Any = None
    written = 0
    try:
        cursor = None
        while True:
            page = api.get(f"/v1/exports/{args.what}", {**query, **({"cursor": cursor} if cursor else {})})
            for record in page[key]:
                if args.format == "jsonl":
                    out.write(json.dumps(record) + "\n")
                else:
                    flat = {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in record.items()}
                    if writer is None:
                        writer = csv.DictWriter(out, fieldnames=list(flat))
                        writer.writeheader()
                    writer.writerow(flat)
                written += 1
            cursor = page.get("next_cursor")
            if not cursor:
                break
    except AdminApiError as exc:
        print(f"kindling: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.output:
            out.close()
    print(f"{written:,} {key} exported" + (f" to {args.output}" if args.output else ""), file=sys.stderr)
    return 0


def _metrics_rebuild(args: argparse.Namespace) -> int:
    if args.local:
        answer = _post_local(args.port, "/_local/metrics/rebuild", {}, timeout=1800)
        if answer is None:
            return 1
        print(answer["result"])
        return 0
    from datetime import timedelta

    import boto3

    from kindling.adapters.metrics_store import DynamoMetricsStore
    from kindling.kernel.errors import Conflict
    from kindling.metrics.rebuild import rebuild_metrics

    days = args.attribution_days
    if days is None and args.stack:
        stack = boto3.client("cloudformation").describe_stacks(StackName=args.stack)["Stacks"][0]
        given = {p["ParameterKey"]: p["ParameterValue"] for p in stack.get("Parameters", [])}
        days = float(given.get("AttributionWindowDays", 14))
    days = 14 if days is None else days
    if not 1 <= days <= 90:
        print("kindling: --attribution-days must be from 1 to 90", file=sys.stderr)
        return 2
    table = args.table or _stack_table(args.stack)
    if table is None:
        return 1
    store = DynamoMetricsStore(table, boto3.client("dynamodb"))
    try:
        # The metrics function times out after 10 s (template Globals): 30 s outlasts any in flight.
        print(rebuild_metrics(store, timedelta(days=days), drain=timedelta(seconds=30)).line())
    except Conflict as exc:
        print(f"kindling: {exc}", file=sys.stderr)
        return 1
    return 0


def _demo(args: argparse.Namespace) -> int:
    from kindling_ops.demo import DemoError, DemoStack, run_demo
    from kindling_ops.local.stack import PARAMETER_ENVIRONMENT

    def setting(given: str | None, parameter: str) -> str:
        variable, default = PARAMETER_ENVIRONMENT[parameter]
        return given or os.environ.get(variable) or default

    if args.leads < 1 or args.weeks < 1:
        print("kindling: --leads and --weeks must be at least 1", file=sys.stderr)
        return 2
    url = args.url or f"http://127.0.0.1:{os.environ.get('PORT', '3000')}"
    try:
        stack = DemoStack(
            url,
            write_key=setting(args.write_key, "WriteKey"),
            admin_token=setting(args.token, "AdminToken"),
            webhook_secret=setting(args.webhook_secret, "CrmWebhookSecret"),
        )
        run_demo(
            stack, leads=args.leads, weeks=args.weeks, seed=args.seed, say=lambda s: print(s, flush=True)
        )
    except DemoError as exc:
        print(f"kindling: {exc}", file=sys.stderr)
        return 1
    return 0


def _doctor(args: argparse.Namespace) -> int:
    import time

    import boto3

    from kindling.kernel import clock
    from kindling_ops import doctor
    from kindling_ops.config import documents
    from kindling_ops.local.stack import dev_secret_defaults

    loaded = _load_config(args.config)
    if loaded is None:
        print(
            "kindling: config/ is not valid, so it cannot be compared with what is applied", file=sys.stderr
        )
        return 2
    try:
        if args.local:
            port = args.port if args.port is not None else int(os.environ.get("PORT", "3000"))
            where = "--local"

            def local_session(endpoint: str) -> object:
                session = boto3.session.Session(
                    aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1"
                )
                return _EndpointSession(session, endpoint)

            inst = doctor.from_local(port, local_session)
        else:
            where = f"--stack {args.stack}"
            inst = doctor.from_stack(args.stack, boto3.session.Session(), dev_secret_defaults())
    except OSError as exc:
        print(f"kindling: cannot reach the local stack: {exc} (is `make run` running?)", file=sys.stderr)
        return 1
    except Exception as exc:  # botocore's errors: no credentials, no such stack
        print(f"kindling: cannot read the installation: {exc}", file=sys.stderr)
        return 1
    print(f"checking {inst.name}", flush=True)
    checks = doctor.run(
        inst,
        template_outputs=doctor.template_output_names(args.template),
        config_documents=documents(loaded),
        where=where,
        now=clock.current().now(),
        sleep=time.sleep,
        round_trip=not args.no_round_trip,
    )
    print(doctor.report(checks))
    return 1 if any(check.status == "fail" for check in checks) else 0


class _EndpointSession:
    """A boto3 session whose clients all go to one endpoint (the local stack's embedded AWS)."""

    def __init__(self, session: object, endpoint: str) -> None:
        self._session = session
        self._endpoint = endpoint

    def client(self, service: str) -> object:
        return self._session.client(service, endpoint_url=self._endpoint)  # type: ignore[attr-defined]


def _moment(text: str) -> datetime:
    """An argparse type: an ISO 8601 time that says which offset it is in."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time, e.g. 2026-03-03T09:00:00Z"
        ) from None
    if moment.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no offset: add Z or e.g. -05:00")
    return moment


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kindling", description="Operate kindling.")
    commands = parser.add_subparsers(dest="command", required=True)
    local = commands.add_parser("local", help="run the whole system on localhost (no AWS account needed)")
    local.add_argument("--port", type=int, default=None, help="HTTP port (default: $PORT or 3000)")
    local.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE, help="SAM template to run")
    local.add_argument(
        "--start-at",
        type=_moment,
        default=None,
        metavar="TIME",
        help="start the stack's clock at this moment, ISO 8601 with an offset "
        "(e.g. 2026-03-03T09:00:00-05:00); it runs on from there (default: $KINDLING_START_AT, else now)",
    )
    local.set_defaults(run=_local)

    config = commands.add_parser("config", help="validate and apply scoring, lifecycle and program config")
    config_commands = config.add_subparsers(dest="config_command", required=True)
    validate = config_commands.add_parser("validate", help="check config/ without applying it")
    validate.add_argument("--dir", type=Path, default=DEFAULT_CONFIG, help="config directory")
    validate.set_defaults(run=_config_validate)
    apply = config_commands.add_parser("apply", help="validate config/ and make it the version in force")
    apply.add_argument("--dir", type=Path, default=DEFAULT_CONFIG, help="config directory")
    target = apply.add_mutually_exclusive_group(required=True)
    target.add_argument("--local", action="store_true", help="the running local stack")
    target.add_argument("--table", help="the DynamoDB table of a deployed stack")
    target.add_argument("--stack", help="a deployed CloudFormation stack (reads its TableName output)")
    apply.add_argument(
        "--port", type=int, default=None, help="the local stack's port (default: $PORT or 3000)"
    )
    apply.set_defaults(run=_config_apply)

    programs = commands.add_parser("programs", help="pause or resume a program")
    programs.add_argument("action", choices=["pause", "resume"])
    programs.add_argument("program", help="the program's id")
    where = programs.add_mutually_exclusive_group(required=True)
    where.add_argument("--local", action="store_true", help="the running local stack")
    where.add_argument("--table", help="the DynamoDB table of a deployed stack")
    where.add_argument("--stack", help="a deployed CloudFormation stack (reads its TableName output)")
    programs.add_argument(
        "--port", type=int, default=None, help="the local stack's port (default: $PORT or 3000)"
    )
    programs.set_defaults(run=_programs)

    report = commands.add_parser("report", help="print the email, funnel or program report for a date range")
    report.add_argument("kind", choices=["emails", "funnel", "program"])
    report.add_argument("--from", dest="start", required=True, help="first day, YYYY-MM-DD")
    report.add_argument("--to", dest="end", required=True, help="last day, YYYY-MM-DD (inclusive)")
    report.add_argument(
        "--by",
        help="funnel: source, industry, segment, intent or program; emails: program (sums per program)",
    )
    report.add_argument("--program", help="program: the program to report on; emails: only this program")
    origin = report.add_mutually_exclusive_group(required=True)
    origin.add_argument("--local", action="store_true", help="the running local stack")
    origin.add_argument("--url", help="a deployed stack's API URL")
    report.add_argument(
        "--port", type=int, default=None, help="the local stack's port (default: $PORT or 3000)"
    )
    report.add_argument("--token", help="the admin token (default: $KINDLING_ADMIN_TOKEN)")
    report.set_defaults(run=_report)

    metrics = commands.add_parser("metrics", help="rebuild every metric from the logged events")
    metrics_commands = metrics.add_subparsers(dest="metrics_command", required=True)
    rebuild = metrics_commands.add_parser("rebuild", help="recount every metric (reports switch when done)")
    place = rebuild.add_mutually_exclusive_group(required=True)
    place.add_argument("--local", action="store_true", help="the running local stack")
    place.add_argument("--table", help="the DynamoDB table of a deployed stack")
    place.add_argument("--stack", help="a deployed CloudFormation stack (reads its TableName output)")
    rebuild.add_argument(
        "--port", type=int, default=None, help="the local stack's port (default: $PORT or 3000)"
    )
    rebuild.add_argument(
        "--attribution-days",
        type=float,
        default=None,
        help="the attribution window in days (default: the stack's AttributionWindowDays, else 14)",
    )
    rebuild.set_defaults(run=_metrics_rebuild)

    def admin_target(command: argparse.ArgumentParser, required: bool = True) -> None:
        place = command.add_mutually_exclusive_group(required=required)
        place.add_argument("--local", action="store_true", help="the running local stack")
        place.add_argument("--stack", help="a deployed stack: its ApiUrl output and admin token secret")
        place.add_argument("--url", help="any kindling API URL (with --token)")
        command.add_argument(
            "--port", type=int, default=None, help="the local stack's port (default: $PORT or 3000)"
        )
        command.add_argument("--token", help="the admin token (default: $KINDLING_ADMIN_TOKEN)")

    importing = commands.add_parser(
        "import",
        help="bring contacts and suppressions in from CSV, Mautic, HubSpot or Pinpoint exports",
        description="Reads the export, then sends suppressions first and contacts after through the admin "
        "API in batches of 500. Each row's outcome goes to a results CSV; an interrupted import goes on "
        "where it stopped when run again, and running a finished one again changes nothing.",
    )
    formats = ["csv", "mautic", "hubspot", "pinpoint", "pinpoint-journey"]
    importing.add_argument("format", choices=formats)
    importing.add_argument(
        "file",
        help="the contacts export (pinpoint: a folder or an s3:// prefix; pinpoint-journey: its JSON)",
    )
    importing.add_argument(
        "--out", help="pinpoint-journey: the folder to write programs/ and templates/ into"
    )
    importing.add_argument(
        "--suppressions",
        help="mautic: the do-not-contact report; hubspot: the unsubscribes and bounces export",
    )
    importing.add_argument("--map", help="csv: a YAML file {columns: {Header: trait}}")
    importing.add_argument(
        "--column", action="append", help="csv: HEADER=TRAIT (repeatable; wins over --map)"
    )
    importing.add_argument("--results", help="where each row's outcome goes (default: FILE.results.csv here)")
    importing.add_argument("--dry-run", action="store_true", help="say what would happen; write nothing")
    importing.add_argument("--enroll", action="store_true", help="created leads enter new-lead programs")
    admin_target(importing, required=False)  # not for pinpoint-journey, which writes files only
    importing.set_defaults(run=_import)

    suppressions = commands.add_parser("suppressions", help="the addresses kindling never mails")
    suppression_commands = suppressions.add_subparsers(dest="suppressions_command", required=True)
    for name, text in (("list", "every suppressed address"), ("export", "the list as CSV or JSON lines")):
        command = suppression_commands.add_parser(name, help=text)
        if name == "export":
            command.add_argument("--format", choices=["csv", "jsonl"], default="csv")
        admin_target(command)
        command.set_defaults(run=_suppressions)
    add = suppression_commands.add_parser("add", help="never mail this address")
    add.add_argument("email")
    add.add_argument(
        "--reason", choices=["unsubscribed", "bounced", "complained", "manual"], default="manual"
    )
    add.add_argument("--by", help="who asks (default: $USER@host)")
    admin_target(add)
    add.set_defaults(run=_suppressions)
    remove = suppression_commands.add_parser("remove", help="mail this address again (needs a reason)")
    remove.add_argument("email")
    remove.add_argument("--note", required=True, help="why it may be mailed again (recorded)")
    remove.add_argument("--by", help="who decides (default: $USER@host)")
    admin_target(remove)
    remove.set_defaults(run=_suppressions)

    export = commands.add_parser(
        "export", help="every lead, or activity in a date range, as CSV or JSON lines"
    )
    export.add_argument("what", choices=["leads", "activity", "person"])
    export.add_argument("person", nargs="?", help="person: the lead's email address or id")
    export.add_argument("--format", choices=["csv", "jsonl"], default="jsonl")
    export.add_argument("--from", dest="start", help="activity: first day or time (inclusive)")
    export.add_argument("--to", dest="end", help="activity: the day or time it ends (exclusive)")
    export.add_argument("--output", help="a file (default: standard output)")
    admin_target(export)
    export.set_defaults(run=_export)

    person = commands.add_parser("person", help="one person's data: an access export, or erasure")
    person_commands = person.add_subparsers(dest="person_command", required=True)
    access = person_commands.add_parser("export", help="everything stored about one person, as JSON")
    access.add_argument("lead", help="the lead's id or email address")
    admin_target(access)
    access.set_defaults(run=_person)

    def erasure_arguments(forget: argparse.ArgumentParser) -> None:
        forget.add_argument("lead", help="the lead's id or email address")
        forget.add_argument(
            "--confirm", required=True, help="the lead's email address again (its id if it has none)"
        )
        forget.add_argument("--by", help="who asks (default: $USER@host)")
        forget.add_argument("--note", help="why, e.g. the request's ticket")
        admin_target(forget)
        forget.set_defaults(run=_person, person_command="erase")

    erasure_arguments(
        person_commands.add_parser("erase", help="delete everything about one person (cannot be undone)")
    )
    erasure_arguments(commands.add_parser("erase", help="the same as `kindling person erase`"))

    crm = commands.add_parser("crm", help="CRM events kindling holds for people it does not know yet")
    crm_commands = crm.add_subparsers(dest="crm_command", required=True)
    unmatched = crm_commands.add_parser(
        "unmatched",
        help="list CRM events that matched no lead (provider, object id, email, stage)",
        description="CRM events for an email or CRM id that no lead has are kept for 90 days and "
        "applied when a lead with that email or CRM id appears. This lists them, newest first.",
    )
    origin = unmatched.add_mutually_exclusive_group(required=True)
    origin.add_argument("--local", action="store_true", help="the running local stack")
    origin.add_argument("--url", help="a deployed stack's API URL")
    unmatched.add_argument(
        "--port", type=int, default=None, help="the local stack's port (default: $PORT or 3000)"
    )
    unmatched.add_argument("--token", help="the admin token (default: $KINDLING_ADMIN_TOKEN)")
    unmatched.add_argument("--json", action="store_true", help="one JSON object per line")
    unmatched.set_defaults(run=_crm_unmatched)

    dlq = commands.add_parser("dlq", help="inspect dead-letter queues and redrive them")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    for name, text in (("list", "messages waiting in each dead-letter queue"), ("redrive", "send them back")):
        command = dlq_commands.add_parser(name, help=text)
        if name == "redrive":
            command.add_argument("queue", help="the dead-letter queue, e.g. SendDeadLetterQueue")
        place = command.add_mutually_exclusive_group(required=True)
        place.add_argument("--local", action="store_true", help="the running local stack")
        place.add_argument("--stack", help="a deployed CloudFormation stack")
        command.add_argument("--port", type=int, default=None, help="the local stack's port")
        command.set_defaults(run=_dlq)

    check = commands.add_parser(
        "doctor",
        help="check an installation: outputs, config, SES, secrets, dead letters, errors, a round trip",
        description="Prints a table of checks with what to do for each that does not pass; exits 1 when "
        "one fails. The round trip sends a synthetic event through the public API, waits for it on a "
        "lead's timeline, then removes that lead.",
    )
    place = check.add_mutually_exclusive_group(required=True)
    place.add_argument("--local", action="store_true", help="the running local stack")
    place.add_argument("--stack", help="a deployed CloudFormation stack")
    check.add_argument("--port", type=int, default=None, help="the local stack's port")
    check.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the config/ to compare")
    check.add_argument("--template", type=Path, default=DEFAULT_TEMPLATE, help=argparse.SUPPRESS)
    check.add_argument("--no-round-trip", action="store_true", help="skip the synthetic event")
    check.set_defaults(run=_doctor)

    demo = commands.add_parser(
        "demo",
        help="play weeks of realistic traffic on the running local stack, then print the reports",
        description="Generates a few hundred leads' visits, forms, email engagement and CRM deal changes "
        "over simulated weeks on a running `kindling local` (start it with `make run`), moving its "
        "clock a day at a time, then prints the funnel and email reports of those days. The same seed "
        "gives the same traffic; on a stack that already has that seed's leads, the next seed is used.",
    )
    demo.add_argument("--url", help="the local stack's URL (default: http://127.0.0.1:$PORT, port 3000)")
    demo.add_argument("--leads", type=int, default=100, help="how many visitors (default 100)")
    demo.add_argument("--weeks", type=int, default=3, help="how many weeks to simulate (default 3)")
    demo.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    demo.add_argument(
        "--write-key", help="the capture write key (default: $KINDLING_WRITE_KEY or the dev key)"
    )
    demo.add_argument("--token", help="the admin token (default: $KINDLING_ADMIN_TOKEN or the dev token)")
    demo.add_argument(
        "--webhook-secret",
        help="the generic CRM webhook's whsec_ secret (default: $KINDLING_WEBHOOK_SECRET or the dev secret)",
    )
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
