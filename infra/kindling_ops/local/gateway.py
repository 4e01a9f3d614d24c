"""The HTTP API on localhost: requests become API Gateway HTTP API (payload 2.0) events.

Routes and path parameters come from the template's HttpApi events. ``/_local/...``
routes belong to the local stack alone.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from werkzeug.wrappers import Request, Response

from kindling_ops.lambda_events import http_event
from kindling_ops.local.template import Template


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function: str

    @property
    def pattern(self) -> re.Pattern[str]:
        regex = ""
        for part in re.split(r"(\{[^}]+\})", self.path):
            if part.startswith("{") and part.endswith("+}"):
                regex += f"(?P<{part[1:-2]}>.+)"
            elif part.startswith("{"):
                regex += f"(?P<{part[1:-1]}>[^/]+)"
            else:
                regex += re.escape(part)
        return re.compile(f"^{regex}$")

    @property
    def specificity(self) -> tuple[int, int]:
        # API Gateway prefers the most specific route: fewer variables, then longer paths.
        return (self.path.count("{"), -len(self.path))


def routes(template: Template) -> list[Route]:
    found = []
    for logical, resource in template.of_type("AWS::Serverless::Function").items():
        for event in ((resource.get("Properties") or {}).get("Events") or {}).values():
            if event.get("Type") == "HttpApi":
                props = event.get("Properties") or {}
                found.append(Route(str(props.get("Method", "ANY")).upper(), props["Path"], logical))
    return sorted(found, key=lambda r: r.specificity)


def _body(request: Request) -> bytes | str | None:
    """The body as text, or as bytes (sent base64-encoded) when it is compressed or not UTF-8."""
    raw = request.get_data(cache=False)
    if not raw:
        return None
    if request.headers.get("Content-Encoding"):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def to_event(request: Request, route: Route, path_parameters: dict[str, str]) -> dict[str, Any]:
    """The event API Gateway would hand the function (payload format 2.0)."""
    return http_event(
        request.method,
        request.path,
        body=_body(request),
        headers=request.headers.items(),
        query={k: request.args.getlist(k) for k in request.args},
        raw_query=request.query_string.decode("latin-1"),
        path_parameters=path_parameters,
        route_key=f"{route.method} {route.path}",
        source_ip=request.remote_addr or "127.0.0.1",
        api_id="local",
        domain_name=request.host,
        protocol=request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
    )


def to_response(result: Any) -> Response:
    if not isinstance(result, dict) or "statusCode" not in result:
        # Payload 2.0 lets a function return a bare value: API Gateway sends it as JSON with 200.
        return Response(json.dumps(result), status=200, content_type="application/json")
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    response = Response(data, status=int(result["statusCode"]))
    for name, value in (result.get("headers") or {}).items():
        response.headers[name] = str(value)
    for name, values in (result.get("multiValueHeaders") or {}).items():
        for value in values:
            response.headers.add(name, str(value))
    for cookie in result.get("cookies") or []:
        response.headers.add("Set-Cookie", cookie)
    return response


LocalRoute = Callable[[Request], Response]


class Gateway:
    def __init__(
        self,
        template: Template,
        invoke: Callable[[str, dict[str, Any]], Any],
        local_routes: dict[tuple[str, str], LocalRoute],
        on_error: Callable[[str, BaseException], None],
        on_request: Callable[[str, str, int, float], None] = lambda *args: None,
    ) -> None:
        self._on_request = on_request
        self.routes = routes(template)
        self._invoke = invoke
        self._local = local_routes
        self._on_error = on_error

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        started = time.perf_counter()
        response = self.handle(request)
        if not request.path.startswith("/_local/"):
            self._on_request(
                request.method, request.path, response.status_code, (time.perf_counter() - started) * 1000
            )
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        local = self._local.get((request.method, request.path))
        if local is not None:
            return local(request)
        if request.path.startswith("/_local/"):
            return _json(404, {"message": "Not Found"})
        route, parameters = self._match(request.method, request.path)
        if route is None:
            return _json(404, {"message": "Not Found"})
        try:
            response = to_response(self._invoke(route.function, to_event(request, route, parameters)))
        except Exception as exc:  # what API Gateway answers when the function itself fails
            self._on_error(route.function, exc)
            response = _json(500, {"message": "Internal Server Error"})
        return response

    def _match(self, method: str, path: str) -> tuple[Route | None, dict[str, str]]:
        for route in self.routes:
            if route.method not in (method, "ANY"):
                continue
            match = route.pattern.match(path)
            if match:
                return route, match.groupdict()
        return None, {}


def _json(status: int, payload: Any) -> Response:
    return Response(json.dumps(payload), status=status, content_type="application/json")
