"""One logger and one metrics object for the whole process.

No Tracer: it loads the X-Ray SDK (about half a second of cold start) even with tracing
off. Lambda's own active tracing still records each invocation.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

logger = Logger(service="kindling")
metrics = Metrics(namespace="kindling", service="kindling")
