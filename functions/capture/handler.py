"""Segment-compatible tracking endpoints: validate at the edge, hand events to the profiles queue.

Also what browsers load first: the website tag and the settings Segment's loader asks for.
"""

from __future__ import annotations

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from kindling.adapters.queue import QueueDelivery
from kindling.adapters.secrets import SecretsManagerSecret
from kindling.kernel import clock
from kindling.kernel.cors import MirroringCORSConfig
from kindling.kernel.http_api import basic_username, json_response, raw_body, register_errors
from kindling.kernel.observability import logger, metrics
from kindling.kernel.settings import CaptureSettings
from kindling.tracking import segment, source_settings, website_tag
from kindling.tracking.bots import is_bot

settings = CaptureSettings()
publisher = QueueDelivery(settings.profiles_queue_url)
write_key = SecretsManagerSecret(settings.write_key_secret_arn)


def _preflight_request_headers() -> str | None:
    return app.current_event.headers.get("access-control-request-headers")


app = APIGatewayHttpResolver(
    # Preflights are answered here (OPTIONS /v1/{proxy+} in the template), with the headers
    # the SDKs ask for besides these.
    cors=MirroringCORSConfig(
        request_headers=_preflight_request_headers,
        allow_origin=settings.origins[0],
        extra_origins=settings.origins[1:],
        allow_headers=["Content-Type", "Content-Encoding", "Authorization", "X-Write-Key"],
        max_age=600,
    )
)
register_errors(app, auth_scheme='Basic realm="kindling"')


def _capture(endpoint: str, body: bytes, content_encoding: str | None, pixel: bool = False) -> int:
    event = app.current_event
    request = segment.CaptureRequest(
        endpoint=endpoint,
        body=body,
        content_encoding=content_encoding,
        basic_username=basic_username(event),
        header_write_key=event.headers.get("x-write-key"),
        source_ip=event.request_context.http.source_ip,
        user_agent=event.request_context.http.user_agent,
        endpoint_is_pixel=pixel,
    )
    count = segment.capture(
        request,
        write_key=write_key.value(),
        now=clock.current().now(),
        publisher=publisher,
        is_bot=is_bot,
    )
    metrics.add_metric(name="EventsAccepted", unit=MetricUnit.Count, value=count)
    return count


@app.post("/v1/<endpoint>")
def track(endpoint: str) -> Response:
    _capture(endpoint, raw_body(app.current_event), app.current_event.headers.get("content-encoding"))
    return json_response(200, {"success": True})


@app.get("/v1/pixel.gif")
def pixel() -> Response:
    body = segment.pixel_request_body(dict(app.current_event.query_string_parameters or {}))
    _capture(segment.pixel_endpoint(body), body, None, pixel=True)
    return Response(
        status_code=200,
        content_type="image/gif",
        body=segment.ONE_PIXEL_GIF,
        headers={"Cache-Control": "no-store, max-age=0"},
        compress=False,
    )


@app.get("/v1/projects/<path_write_key>/settings")
def project_settings(path_write_key: str) -> Response:
    """What Segment's browser loader fetches first, when its ``cdnURL`` is this API."""
    document = source_settings.settings_document(
        path_write_key, write_key.value(), app.current_event.request_context.domain_name
    )
    # The CORS headers name the asking origin, so a shared cache keeps one copy per origin.
    return json_response(200, document, {"Cache-Control": source_settings.CACHE_CONTROL, "Vary": "Origin"})


@app.get("/v1/tag.js", cors=False)
def tag_script() -> Response:
    script = website_tag.script()
    headers = {
        "Cache-Control": website_tag.CACHE_CONTROL,
        "ETag": script.etag,
        "Vary": "Accept-Encoding",
        "X-Content-Type-Options": "nosniff",
        # A script is public: any site may load it, whatever the origins allowed to send events.
        "Access-Control-Allow-Origin": "*",
    }
    if website_tag.not_modified(app.current_event.headers.get("if-none-match"), script.etag):
        return Response(status_code=304, headers=headers)
    return Response(
        status_code=200,
        content_type=website_tag.CONTENT_TYPE,
        body=script.body,
        headers=headers,
        compress=True,
    )


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
