"""The bytes of an outgoing mail, as the SMTP DATA command sends them.

Django's `EmailMessage.message()` builds the mail with the email package's modern API, whose
header objects parse every value they are given; for the acknowledgement of a new ticket that
cost 4 ms of the 20 ms a mail's processing and acknowledgement took in all (bench/README.md,
"Mail in"). The mails supportdesk sends have one shape: a plain-text body, an HTML
alternative, ASCII addresses and headers we wrote, and a subject that may be in any language.
That shape is written here with the email package's older (compat32) classes, which take
values as given, in about a quarter of the time. Anything else (attachments, a non-ASCII
address, another alternative) goes the way Django writes it, so nothing is ever dropped.
"""

from __future__ import annotations

import email.charset
import email.policy
from datetime import UTC, datetime
from email.header import Header
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, make_msgid

from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.utils import DNS_NAME

_SMTP_LINES = email.policy.compat32.clone(linesep="\r\n")
_UTF8_QP = email.charset.Charset("utf-8")
_UTF8_QP.body_encoding = email.charset.QP
_UTF8_QP.header_encoding = email.charset.QP
_OWN_HEADERS = frozenset({"from", "to", "cc", "reply-to", "bcc", "subject"})
_LINE_MAX = 998  # RFC 5322: longer lines need an encoding, not 7bit


def as_bytes(message: EmailMessage) -> bytes:
    """The mail with CRLF line ends; the same headers and parts, whichever way it is written."""
    if not _plain_shape(message):
        return bytes(message.message(policy=email.policy.SMTP).as_bytes())
    html = _html_alternative(message)
    text = _text_part(str(message.body), "plain")
    mime: MIMEBase = text
    if html is not None:
        mime = MIMEMultipart("alternative")
        mime.attach(text)
        mime.attach(_text_part(html, "html"))
    subject = str(message.subject)
    mime["Subject"] = (
        subject if subject.isascii() else Header(subject, _UTF8_QP, header_name="Subject").encode()
    )
    mime["From"] = str(message.from_email)
    for name, addresses in (("To", message.to), ("Cc", message.cc), ("Reply-To", message.reply_to)):
        if addresses:
            mime[name] = ", ".join(addresses)
    names = {name.lower() for name in message.extra_headers}
    if "date" not in names:
        mime["Date"] = format_datetime(datetime.now(UTC))
    if "message-id" not in names:
        mime["Message-ID"] = make_msgid(domain=str(DNS_NAME))
    for name, value in message.extra_headers.items():
        mime[name] = str(value)
    return mime.as_bytes(policy=_SMTP_LINES)


def _plain_shape(message: EmailMessage) -> bool:
    """Whether the mail is the shape written here: every address and header ASCII (a
    non-ASCII one needs the IDNA and encoded-word rules Django applies), no attachments."""
    if type(message) not in (EmailMessage, EmailMultiAlternatives) or message.attachments:
        return False
    if message.content_subtype != "plain" or message.encoding not in (None, "utf-8"):
        return False
    addresses = [str(message.from_email), *message.to, *message.cc, *message.reply_to]
    headers = [f"{name}{value}" for name, value in message.extra_headers.items()]
    if not all(value.isascii() for value in addresses + headers):
        return False
    if any(
        "\n" in value or "\r" in value for value in [*addresses, *headers, str(message.subject)]
    ):
        return False  # Django refuses a header injection; so must the mail
    if any(name.lower() in _OWN_HEADERS for name in message.extra_headers):
        return False
    alternatives = getattr(message, "alternatives", [])
    return len(alternatives) <= 1 and all(
        isinstance(content, str) and mimetype == "text/html" for content, mimetype in alternatives
    )


def _html_alternative(message: EmailMessage) -> str | None:
    alternatives = getattr(message, "alternatives", [])
    return str(alternatives[0][0]) if alternatives else None


def _text_part(content: str, subtype: str) -> MIMENonMultipart:
    """7bit when the text allows it, so that it reads as it is; else UTF-8 quoted-printable.
    Ending in a line break, as Django's parts do."""
    content = content if content.endswith("\n") else content + "\n"
    if content.isascii() and all(len(line) <= _LINE_MAX for line in content.splitlines()):
        return MIMEText(content, subtype, "us-ascii")
    part = MIMENonMultipart("text", subtype, charset="utf-8")
    part.set_payload(content, _UTF8_QP)  # sets the quoted-printable transfer encoding
    return part
