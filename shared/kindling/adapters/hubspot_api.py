"""HubSpot's CRM API, read with a private app's access token: a deal's contacts and its stage.

HubSpot's deal webhooks name the deal only. The CRM consumer asks HubSpot which contacts
are associated with the deal (associations v4) and their emails (contacts batch read), so a
deal's stage moves every contact's lead. Answers are cached for a minute (a batch of
webhooks often names one deal many times); 429 and 5xx answers are retried with backoff,
honouring ``Retry-After``; a refused token makes the look-up unavailable rather than failing
the message, so the consumer falls back to what the webhook itself says.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from kindling.crm.sales import CrmLookupUnavailable, DealContact
from kindling.kernel.errors import Retryable

#: At most about 25 s per request (4 tries of 5 s, and the waits between): the function's timeout
#: (120 s) covers a message's look-ups even while HubSpot throttles.
ATTEMPTS = 4
MAX_BACKOFF_SECONDS = 4.0
TIMEOUT_SECONDS = 5
#: Short: a batch of webhooks names one deal many times, but its contacts and stage do change.
CACHE_SECONDS = 60.0


class HubspotApi:
    def __init__(
        self,
        base_url: str,
        token: Callable[[], str],
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._token = token
        self._sleep = sleep
        self._monotonic = monotonic
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Any]] = {}
        self.requests = 0  # what was actually asked of HubSpot (the cache spares the rest)

    # --- the port ------------------------------------------------------------------------
    def contacts(self, deal_id: str) -> list[DealContact]:
        """Every contact associated with the deal, with its email when it has one."""
        return self._cached(f"deal-contacts:{deal_id}", lambda: self._contacts(deal_id))

    def contact(self, contact_id: str) -> DealContact | None:
        found = self._cached(f"contact:{contact_id}", lambda: self._emails([contact_id]))
        return found[0] if found else None

    def stage(self, deal_id: str) -> str | None:
        return self._cached(f"deal-stage:{deal_id}", lambda: self._stage(deal_id))

    # --- HubSpot's endpoints -------------------------------------------------------------------
    def _contacts(self, deal_id: str) -> list[DealContact]:
        ids: list[str] = []
        after: str | None = None
        path = f"/crm/v4/objects/deals/{urllib.parse.quote(deal_id, safe='')}/associations/contacts"
        while True:
            query = {"limit": "500", **({"after": after} if after else {})}
            page = self._request("GET", f"{path}?{urllib.parse.urlencode(query)}")
            if page is None:
                return []  # no such deal (deleted meanwhile)
            ids += [str(r["toObjectId"]) for r in page.get("results", []) if "toObjectId" in r]
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                break
        return self._emails(list(dict.fromkeys(ids))) if ids else []

    def _emails(self, contact_ids: list[str]) -> list[DealContact]:
        found: dict[str, str | None] = {}
        for start in range(0, len(contact_ids), 100):  # the batch read takes 100 ids
            chunk = contact_ids[start : start + 100]
            body = {"properties": ["email"], "inputs": [{"id": i} for i in chunk]}
            answer = self._request("POST", "/crm/v3/objects/contacts/batch/read", body) or {}
            for result in answer.get("results", []):
                email = (result.get("properties") or {}).get("email")
                found[str(result.get("id"))] = email if isinstance(email, str) and email else None
        return [DealContact(contact_id=i, email=found.get(i)) for i in contact_ids if i in found]

    def _stage(self, deal_id: str) -> str | None:
        path = f"/crm/v3/objects/deals/{urllib.parse.quote(deal_id, safe='')}?properties=dealstage"
        deal = self._request("GET", path)
        stage = ((deal or {}).get("properties") or {}).get("dealstage")
        return stage if isinstance(stage, str) and stage else None

    # --- plumbing ------------------------------------------------------------------------------
    def forget_deal(self, deal_id: str) -> None:
        """An association changed: the deal's contacts (and what was read with them) are read anew."""
        self._cache.pop(f"deal-contacts:{deal_id}", None)
        self._cache.pop(f"deal-stage:{deal_id}", None)

    def _cached(self, key: str, load: Callable[[], Any]) -> Any:
        now = self._monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = load()
        if value in (None, []):
            return value  # nothing found yet (a contact being associated): ask again next time
        self._cache[key] = (now + self._cache_seconds, value)
        if len(self._cache) > 5000:  # a long-lived container: drop what has expired
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        return value

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The JSON answer; None for 404. ``Retryable`` once retries are spent."""
        token = self._token()
        if not token:
            raise CrmLookupUnavailable("no HubSpot access token is set (hubspot_access_token)")
        data = json.dumps(body).encode() if body is not None else None
        problem = ""
        for attempt in range(ATTEMPTS):
            request = urllib.request.Request(
                self._base + path,
                data=data,
                method=method,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Accept": "application/json",
                    **({"Content-Type": "application/json"} if data is not None else {}),
                },
            )
            self.requests += 1
            wait = min(MAX_BACKOFF_SECONDS, 0.25 * 2**attempt)
            try:
                with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
                    answer = json.loads(response.read() or b"{}")
                    return answer if isinstance(answer, dict) else {}
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    return None
                if exc.code in (401, 403):
                    raise CrmLookupUnavailable(f"HubSpot refused the access token ({exc.code})") from None
                if exc.code != 429 and exc.code < 500:
                    raise CrmLookupUnavailable(f"HubSpot answered {exc.code} to {method} {path}") from None
                problem = f"HubSpot answered {exc.code}"
                retry_after = exc.headers.get("Retry-After") if exc.headers else None
                if retry_after and retry_after.strip().isdigit():
                    wait = min(MAX_BACKOFF_SECONDS, float(retry_after.strip()))
            except (urllib.error.URLError, OSError, ValueError) as exc:
                problem = f"HubSpot could not be reached: {type(exc).__name__}"
            if attempt + 1 < ATTEMPTS:
                self._sleep(wait)
        raise Retryable(f"{problem} ({ATTEMPTS} attempts at {method} {path.split('?')[0]})")
