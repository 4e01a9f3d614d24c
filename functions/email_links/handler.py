"""Behind the links in our emails: tracked clicks, open pixels, and one-click unsubscribe."""

from __future__ import annotations

from typing import Literal
from urllib.parse import parse_qs

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from kindling.adapters.email_store import DynamoEmailStore
from kindling.adapters.eventbridge import EventBridgePublisher
from kindling.adapters.secrets import SecretsManagerSecret
from kindling.email import links
from kindling.email.render import LinkSigner
from kindling.kernel import clock
from kindling.kernel.errors import InvalidInput, NotFound
from kindling.kernel.http_api import raw_body
from kindling.kernel.observability import logger
from kindling.kernel.settings import EmailLinksSettings
from kindling.tracking.segment import ONE_PIXEL_GIF

settings = EmailLinksSettings()
link_secret = SecretsManagerSecret(settings.link_secret_arn)
store = DynamoEmailStore(settings.table_name)
publisher = EventBridgePublisher(settings.bus_name)
app = APIGatewayHttpResolver()


def _links() -> LinkSigner:
    """The signer with the key in force (read through the secret's cache, so a rotation applies)."""
    return LinkSigner(link_secret.value().encode())


def _html(status: int, page: str) -> Response:
    return Response(
        status_code=status,
        content_type="text/html; charset=utf-8",
        body=page,
        headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex", "Referrer-Policy": "no-referrer"},
    )


@app.exception_handler(InvalidInput)
def _invalid(exc: InvalidInput) -> Response:
    return _html(400, links.invalid_page())


@app.exception_handler(NotFound)
def _unknown(exc: NotFound) -> Response:
    return _html(404, links.invalid_page())


@app.get("/v1/c/<token>")
def click(token: str) -> Response:
    url = links.follow_click(
        token,
        _links(),
        store,
        publisher,
        clock.current().now(),
        app.current_event.request_context.http.user_agent,
    )
    return Response(status_code=302, headers={"Location": url, "Cache-Control": "no-store"}, body="")


@app.get("/v1/o/<token>")
def open_pixel(token: str) -> Response:
    status = 200
    try:
        links.record_open(
            token.removesuffix(".gif"),
            _links(),
            store,
            publisher,
            clock.current().now(),
            app.current_event.request_context.http.user_agent,
        )
    except InvalidInput:
        status = 400  # still an image: a mail client shows nothing either way
    return Response(
        status_code=status,
        content_type="image/gif",
        body=ONE_PIXEL_GIF,
        headers={"Cache-Control": "no-store, max-age=0"},
        compress=False,
    )


def _token() -> str:
    token = app.current_event.get_query_string_value("token")
    if not token:
        raise InvalidInput("token: missing")
    return token


@app.get("/v1/unsubscribe")
@app.get("/v1/preferences")
def unsubscribe_page() -> Response:
    return _html(200, links.confirmation_page(_token(), _links(), store))


@app.post("/v1/unsubscribe")
def unsubscribe() -> Response:
    form = parse_qs(raw_body(app.current_event).decode("utf-8", "replace"))
    # RFC 8058: mail clients POST "List-Unsubscribe=One-Click"; our page posts a choice.
    choice: Literal["all", "monthly"] = "monthly" if form.get("choice") == ["monthly"] else "all"
    links.unsubscribe(_token(), choice, _links(), store, publisher, clock.current().now())
    return _html(200, links.done_page(choice))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
