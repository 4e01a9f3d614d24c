"""A small fake of HubSpot's CRM API over HTTP, serving the documented response shapes.

Deals with their associated contacts (associations v4, paged), contacts read in batches
(``/crm/v3/objects/contacts/batch/read``) and a deal's properties (``/crm/v3/objects/deals/{id}``).
It checks the bearer token, can answer 429 with ``Retry-After`` a given number of times, and
records every request, so tests can count what the cache spared.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

TOKEN = "pat-na1-00000000-fake-hubspot-token"


@dataclass
class FakeHubspot:
    token: str = TOKEN
    #: deal id -> (dealstage, [contact ids])
    deals: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    #: contact id -> email
    contacts: dict[str, str] = field(default_factory=dict)
    page_size: int = 2
    throttle_next: int = 0
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._answer(self, "GET")

            def do_POST(self) -> None:
                fake._answer(self, "POST")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(handler.path)
        self.requests.append((method, url.path))
        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(handler, 401, {"status": "error", "category": "INVALID_AUTHENTICATION"})
        if self.throttle_next:
            self.throttle_next -= 1
            body = {
                "status": "error",
                "message": "You have reached your secondly limit.",
                "errorType": "RATE_LIMIT",
            }
            return self._send(handler, 429, body, {"Retry-After": "0"})
        parts = url.path.strip("/").split("/")
        query = parse_qs(url.query)
        if (
            method == "GET"
            and parts[:4] == ["crm", "v4", "objects", "deals"]
            and parts[5:] == ["associations", "contacts"]
        ):
            deal = self.deals.get(parts[4])
            if deal is None:
                return self._send(handler, 404, {"status": "error", "category": "OBJECT_NOT_FOUND"})
            start = int(query.get("after", ["0"])[0])
            ids = deal[1][start : start + self.page_size]
            results = [
                {
                    "toObjectId": int(i),
                    "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": 3, "label": None}],
                }
                for i in ids
            ]
            page: dict[str, Any] = {"results": results}
            if start + self.page_size < len(deal[1]):
                page["paging"] = {"next": {"after": str(start + self.page_size), "link": "..."}}
            return self._send(handler, 200, page)
        if method == "POST" and url.path == "/crm/v3/objects/contacts/batch/read":
            length = int(handler.headers.get("Content-Length") or 0)
            wanted = [i["id"] for i in json.loads(handler.rfile.read(length))["inputs"]]
            results = [
                {"id": i, "properties": {"email": self.contacts[i], "hs_object_id": i}, "archived": False}
                for i in wanted
                if i in self.contacts
            ]
            return self._send(handler, 200, {"status": "COMPLETE", "results": results})
        if method == "GET" and parts[:4] == ["crm", "v3", "objects", "deals"] and len(parts) == 5:
            deal = self.deals.get(parts[4])
            if deal is None:
                return self._send(handler, 404, {"status": "error", "category": "OBJECT_NOT_FOUND"})
            return self._send(
                handler, 200, {"id": parts[4], "properties": {"dealstage": deal[0], "hs_object_id": parts[4]}}
            )
        self._send(handler, 404, {"status": "error", "message": f"no route {method} {url.path}"})

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)
