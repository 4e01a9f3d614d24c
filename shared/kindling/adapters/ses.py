"""Mailer on SES v2: a MIME message (so List-Unsubscribe headers go out as written) sent raw,
through the stack's configuration set, tagged with the send id that SES echoes in its events."""

from __future__ import annotations

import re
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formatdate, make_msgid
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from kindling.adapters import aws
from kindling.email.sender import OutgoingEmail
from kindling.kernel.errors import InvalidInput, Retryable

#: SES refusals that no retry will cure.
PERMANENT = frozenset(
    {
        "MessageRejected",
        "MailFromDomainNotVerifiedException",
        "AccountSuspendedException",
        "BadRequestException",
    }
)
_TAG_VALUE = re.compile(r"[^A-Za-z0-9_.@-]")


#: SMTP line endings, and no folding below RFC 5322's hard limit: a folded List-Unsubscribe
#: would go out as RFC 2047 encoded-words, which mailbox providers do not read as a URL.
_POLICY = policy.SMTP.clone(max_line_length=998)


def mime(email: OutgoingEmail) -> bytes:
    message = EmailMessage(policy=_POLICY)
    message["From"] = Address(display_name=email.from_name, addr_spec=email.from_address)
    message["To"] = email.to
    if email.reply_to:
        message["Reply-To"] = email.reply_to
    message["Subject"] = email.rendered.subject
    message["Date"] = format_datetime(email.date) if email.date else formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=email.from_address.rpartition("@")[2])
    for name, value in email.rendered.headers.items():
        message[name] = value
    message.set_content(email.rendered.text)
    message.add_alternative(email.rendered.html, subtype="html")
    return bytes(message)


class SesMailer:
    def __init__(self, configuration_set: str, client: Any = None) -> None:
        self._configuration_set = configuration_set
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("sesv2")

    def send(self, email: OutgoingEmail) -> str:
        try:
            response = self.client.send_email(
                FromEmailAddress=email.from_address,
                Destination={"ToAddresses": [email.to]},
                Content={"Raw": {"Data": mime(email)}},
                ConfigurationSetName=self._configuration_set,
                EmailTags=[{"Name": k, "Value": _TAG_VALUE.sub("_", v)[:256]} for k, v in email.tags.items()],
            )
        except ClientError as exc:
            code = aws.error_code(exc)
            if code in PERMANENT:
                raise InvalidInput(f"SES refused the email: {code}") from exc
            raise Retryable(f"SES did not take the email: {code or exc}") from exc
        except BotoCoreError as exc:
            raise Retryable(f"SES could not be reached: {exc}") from exc
        return str(response["MessageId"])
