"""What every HTTP function shares: raw bodies, auth headers, and errors as clear 4xx JSON."""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
import json
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from kindling.kernel.errors import InvalidInput, NotFound, Retryable, Unauthorized
from kindling.kernel.observability import logger

#: Powertools route middleware: (app, next) -> response.
Middleware = Callable[[Any, Callable[[Any], Response]], Response]


def _json_default(value: Any) -> Any:
    """Times as ISO 8601 (``2026-12-07T14:00:05+00:00``), anything else as its text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(payload, default=_json_default),
        headers=headers,
    )


def raw_body(event: APIGatewayProxyEventV2) -> bytes:
    body = event.body or ""
    if event.is_base64_encoded:
        try:
            return base64.b64decode(body)
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput("the request body is not valid base64") from exc
    return body.encode("utf-8", "surrogatepass")  # a lone surrogate: bytes the parsers refuse


def basic_username(event: APIGatewayProxyEventV2) -> str | None:
    header = event.headers.get("authorization") or ""
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "basic" or not credentials:
        return None
    try:
        decoded = base64.b64decode(credentials.strip()).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


def require_bearer(event: APIGatewayProxyEventV2, token: str) -> None:
    header = event.headers.get("authorization") or ""
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized("send the admin token as 'Authorization: Bearer <token>'")
    if not hmac.compare_digest(given.strip().encode("utf-8", "surrogatepass"), token.encode()):
        raise Unauthorized("invalid admin token")


def bearer_middleware(token: Callable[[], str]) -> Middleware:
    """Route middleware that lets a request through only with ``Authorization: Bearer <token>``.

    ``token`` is read per request (a rotated secret applies). A refusal is ``Unauthorized``:
    the app's error handler answers 401.
    """

    def require_bearer_token(app: Any, next_middleware: Callable[[Any], Response]) -> Response:
        require_bearer(app.current_event, token())
        return next_middleware(app)

    return require_bearer_token


class GuardedRouter(APIGatewayHttpRouter):
    """A router whose every route runs ``guard`` first: declared once, no route can forget it.

    (Powertools' ``router.use(...)`` would not do: including a router makes its middlewares
    global to the app, public pages included.)
    """

    def __init__(self, guard: Middleware) -> None:
        super().__init__()
        self._guard = guard

    def route(self, *args: Any, **kwargs: Any) -> Any:
        # ``get``/``post`` pass every argument positionally, so bind them to find ``middlewares``.
        bound = inspect.signature(APIGatewayHttpRouter.route).bind(self, *args, **kwargs)
        bound.arguments["middlewares"] = [self._guard, *(bound.arguments.get("middlewares") or [])]
        return super().route(*bound.args[1:], **bound.kwargs)


def register_errors(app: APIGatewayHttpResolver, *, auth_scheme: str) -> None:
    """Map domain errors to responses that name the problem (and never echo secrets or PII)."""

    @app.exception_handler(InvalidInput)
    def _invalid(exc: InvalidInput) -> Response:
        return json_response(400, {"error": "invalid_request", "problems": exc.problems})

    @app.exception_handler(Unauthorized)
    def _unauthorized(exc: Unauthorized) -> Response:
        return json_response(
            401, {"error": "unauthorized", "message": str(exc)}, {"WWW-Authenticate": auth_scheme}
        )

    @app.exception_handler(NotFound)
    def _not_found(exc: NotFound) -> Response:
        return json_response(404, {"error": "not_found", "message": str(exc)})

    @app.exception_handler(Retryable)
    def _unavailable(exc: Retryable) -> Response:
        logger.warning("dependency unavailable", extra={"reason": str(exc)})
        return json_response(
            503, {"error": "unavailable", "message": "try again shortly"}, {"Retry-After": "1"}
        )
