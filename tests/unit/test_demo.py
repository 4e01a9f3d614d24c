"""``kindling demo``'s traffic: deterministic for a seed, inside its simulated days, and a realistic mix."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kindling.scoring.config import ScoringConfig
from kindling.tracking.bots import is_bot
from kindling.tracking.segment import CaptureRequest, accept
from kindling_ops.cli import build_parser
from kindling_ops.config import load
from kindling_ops.demo import (
    CHECKPOINT_HOUR,
    COMPANIES,
    FORMS,
    Lead,
    crm_moves_for_day,
    engagement,
    events_for_day,
    make_leads,
)

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday, midnight UTC
DAYS = 42


def whole_run(seed: int = 7, count: int = 300) -> tuple[list[Lead], list[list[dict]]]:
    leads = make_leads(random.Random(f"{seed}:leads"), count, DAYS)
    return leads, [events_for_day(random.Random(f"{seed}:day:{d}"), leads, d, START) for d in range(DAYS)]


@pytest.fixture(scope="module")
def run() -> tuple[list[Lead], list[list[dict]]]:
    return whole_run()


def test_the_same_seed_gives_the_same_traffic_and_another_seed_other_traffic(run: tuple) -> None:
    leads, days = run
    again_leads, again_days = whole_run()
    assert again_leads == leads and again_days == days
    other_leads, other_days = whole_run(seed=8)
    assert [lead.email for lead in other_leads] != [lead.email for lead in leads]
    assert other_days != days


def test_every_event_lies_within_its_simulated_day_before_the_checkpoint(run: tuple) -> None:
    _, days = run
    for day, messages in enumerate(days):
        start = START + timedelta(days=day)
        for message in messages:
            at = datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00"))
            assert start <= at < start + timedelta(hours=CHECKPOINT_HOUR), (day, message)


def test_the_capture_api_accepts_every_message_and_flags_only_the_crawler(run: tuple) -> None:
    _, days = run
    messages = [m for day in days for m in day]
    assert len({m["messageId"] for m in messages}) == len(messages), "message ids are unique"
    for day, batch in enumerate(days[:7]):
        body = json.dumps({"batch": batch}).encode()
        checkpoint = START + timedelta(days=day, hours=CHECKPOINT_HOUR)
        events = accept(
            CaptureRequest(endpoint="batch", body=body, basic_username="key"),
            write_key="key",
            now=checkpoint,
            is_bot=is_bot,
        )
        assert len(events) == len(batch)
        assert all(e.bot == e.anonymous_id.startswith("crawler-") for e in events)
        assert all(e.timestamp <= checkpoint for e in events)


def test_visitors_arrive_from_campaigns_referrers_and_directly(run: tuple) -> None:
    _, days = run
    pages = [m for day in days for m in day if m["type"] == "page"]
    campaigns = Counter((c["source"], c["medium"]) for m in pages if (c := m["context"].get("campaign")))
    assert set(campaigns) == {("google", "cpc"), ("linkedin", "paid-social"), ("newsletter", "email")}
    assert all(campaigns[pair] >= 20 for pair in campaigns)
    first_pages = [m for m in pages if m["context"].get("campaign")]
    assert all("utm_source=" in m["context"]["page"]["url"] for m in first_pages)
    referrers = {m["context"]["page"]["referrer"] for m in pages} - {""}
    external = {r.split("/")[2] for r in referrers if not r.startswith("https://acme.example")}
    assert external == {"www.google.com", "www.linkedin.com", "www.g2.com"}
    assert sum(not m["context"]["page"]["referrer"] for m in pages) > 50, "direct visits and returns"


def test_leads_identify_once_with_realistic_traits(run: tuple) -> None:
    leads, days = run
    identifies = [m for day in days for m in day if m["type"] == "identify"]
    known = [lead for lead in leads if lead.forms]
    assert len(identifies) == len(known)
    assert 0.75 < len(known) / len(leads) < 0.98, "most visitors fill in a form, not all"
    domains = {c.domain for c in COMPANIES}
    assert sum(m["traits"]["email"].split("@")[1] in domains for m in identifies) > 0.9 * len(identifies)
    for message in identifies:
        traits = message["traits"]
        assert {"email", "first_name", "last_name", "title", "company", "industry", "company_size"} <= set(
            traits
        )
    scored = {"Software", "SaaS", "Financial Services", "Fintech", "E-commerce"}
    industries = Counter(m["traits"]["industry"] for m in identifies)
    assert scored <= set(industries) and len(set(industries) - scored) >= 4
    assert len({m["traits"]["email"] for m in identifies}) == len(identifies)


def test_the_events_are_ones_the_shipped_scoring_rewards(run: tuple) -> None:
    _, days = run
    scoring = load(ROOT / "config")["scoring.yaml"]
    assert isinstance(scoring, ScoringConfig)
    rewarded = {r.match.event for r in scoring.engagement.rules if r.match.event}
    tracks = Counter(m["event"] for day in days for m in day if m["type"] == "track")
    assert set(tracks) == set(FORMS) and set(tracks) <= rewarded
    assert tracks["Whitepaper Downloaded"] > tracks["Webinar Registered"] > tracks["Demo Requested"] > 10
    paths = Counter(m["context"]["page"]["path"] for day in days for m in day if m["type"] == "page")
    assert paths["/pricing"] > 50 and paths["/careers"] > 0
    assert sum(n for path, n in paths.items() if path.startswith("/customers/")) > 50


def test_deals_open_after_a_demo_request_and_close_won_or_lost_with_amounts(run: tuple) -> None:
    leads, _ = run
    moves = [m for day in range(DAYS) for m in crm_moves_for_day(leads, day)]
    assert Counter(m.stage for m in moves).keys() == {"discovery", "proposal", "won", "lost"}
    by_deal: dict[str, list] = {}
    for move in moves:
        by_deal.setdefault(move.deal_id, []).append(move)
    for lead in leads:
        if not lead.crm:
            continue
        asked = min(
            d for d, events in lead.forms.items() if {"Demo Requested", "Trial Started"} & set(events)
        )
        deal = by_deal[lead.crm[0].deal_id]
        stages = [m.stage for m in deal]
        assert stages[:2] == ["discovery", "proposal"][: len(stages)]
        assert len(stages) < 3 or (len(stages) == 3 and stages[2] in ("won", "lost"))
        assert asked < deal[0].day and [m.day for m in deal] == sorted(m.day for m in deal)
        assert all(m.amount and m.amount > 0 for m in deal if m.stage in ("proposal", "won", "lost"))
        assert all(m.email == lead.email for m in deal)
        occurred = deal[-1].occurred_at(START)
        assert occurred < START + timedelta(days=deal[-1].day, hours=CHECKPOINT_HOUR)


def test_recipients_open_more_than_they_click_and_warmer_leads_engage_more(run: tuple) -> None:
    leads, _ = run
    rng = random.Random(1)
    rates = {}
    for intent in ("cold", "hot"):
        lead = next(lead for lead in leads if lead.intent == intent)
        acts = [engagement(rng, lead) for _ in range(4000)]
        assert all(a.opened for a in acts if a.clicked or a.unsubscribed)
        rates[intent] = (sum(a.opened for a in acts) / 4000, sum(a.clicked for a in acts) / 4000)
    assert rates["hot"][0] > rates["cold"][0] > rates["cold"][1] > 0
    assert rates["hot"][1] > rates["cold"][1]


def test_the_cli_takes_the_demo_options() -> None:
    args = build_parser().parse_args(
        ["demo", "--url", "http://127.0.0.1:3001", "--leads", "20", "--weeks", "2"]
    )
    assert (args.url, args.leads, args.weeks, args.seed) == ("http://127.0.0.1:3001", 20, 2, 7)


class FakeStack:
    """Stands in for DemoStack: an outbox to read, and the requests recipients make."""

    def __init__(self, messages: list[dict]) -> None:
        self.messages = messages
        self.reads = 0
        self.calls: list[tuple[str, str]] = []

    def outbox(self) -> list[dict]:
        self.reads += 1
        return [] if self.reads == 1 else self.messages

    def request(
        self, method: str, url: str, body: bytes | None = None, headers: dict | None = None, **_: object
    ):
        from kindling_ops.demo import Answer

        self.calls.append((method, url))
        if "/v1/c/" in url:
            return Answer(302, {"Location": "https://acme.example/pricing?utm_source=kindling"}, b"")
        return Answer(200, {}, b"")


def test_recipients_open_click_and_unsubscribe_through_the_emails_own_urls(run: tuple) -> None:
    from kindling_ops.demo import Recipients, Tally

    leads, _ = run
    known = [lead for lead in leads if lead.forms][:40]
    api = "http://127.0.0.1:3000"
    messages = [
        {
            "to": [lead.email],
            "subject": f"Welcome, {lead.first_name}",
            "headers": {"List-Unsubscribe": f"<{api}/v1/unsubscribe?token=u{n}>"},
            "html": f'<a href="{api}/v1/c/link{n}a">a</a> <a href="{api}/v1/c/link{n}b">b</a>'
            f'<img src="{api}/v1/o/open{n}.gif" width="1" height="1" alt="">',
        }
        for n, lead in enumerate(known)
    ] + [{"to": ["someone-else@example.com"], "subject": "not ours", "html": ""}]
    stack = FakeStack(messages)
    tally = Tally()
    now = START + timedelta(days=3, hours=CHECKPOINT_HOUR)
    visits = Recipients(stack, leads, 7, tally).read(now)  # type: ignore[arg-type]

    assert tally.emails == len(known)
    opens = [url for method, url in stack.calls if "/v1/o/" in url]
    clicks = [url for method, url in stack.calls if "/v1/c/" in url]
    unsubscribes = [url for method, url in stack.calls if method == "POST"]
    assert (len(opens), len(clicks), len(unsubscribes)) == (tally.opens, tally.clicks, tally.unsubscribes)
    assert 0 < tally.clicks < tally.opens < len(known)
    assert all(url.startswith(f"{api}/v1/unsubscribe?token=u") for url in unsubscribes)
    assert len(visits) == tally.clicks
    by_id = {lead.anonymous_id for lead in known}
    for visit in visits:
        assert visit["type"] == "page" and visit["anonymousId"] in by_id
        assert visit["context"]["page"]["url"].startswith("https://acme.example/pricing")
        assert visit["timestamp"] < now.isoformat().replace("+00:00", "Z")
    stack.reads, stack.calls = 0, []
    Recipients(stack, leads, 7, Tally()).read(now)  # type: ignore[arg-type]
    assert len(stack.calls) == len(opens) + len(clicks) + len(unsubscribes), (
        "the same seed, the same engagement"
    )


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_a_one_week_demo_still_shows_an_mql_path_and_a_deal(seed: int) -> None:
    """`kindling demo --leads 20 --weeks 1` must show the whole path at least once."""
    leads = make_leads(random.Random(f"{seed}:leads"), 20, 7)
    with_deals = [lead for lead in leads if lead.crm and lead.crm[0].day < 7]
    assert with_deals
    buyer = with_deals[0]
    wants = {"Demo Requested", "Trial Started"}
    asked = [day for day, forms in buyer.forms.items() if wants & set(forms)]
    assert asked and min(asked) < buyer.crm[0].day
