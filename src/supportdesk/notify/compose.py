"""The bytes of an outgoing mail, as the SMTP DATA command sends them.

Django's `EmailMessage.message()` builds the mail with the email package's modern API, whose
header objects parse every value they are given; for the acknowledgement of a new ticket that
cost 4 ms of the 20 ms a mail's processing and acknowledgement took in all (bench/README.md,
"Mail in"). The mails supportdesk sends have one shape: a plain-text body, an HTML
alternative, ASCII addresses and headers we wrote, and a subject that may be in any language.
That shape is written here byte for byte as the email package's older (compat32) generator
writes it, with its header folding, encoded words and quoted-printable: 0.1 ms for an
acknowledgement (0.2 ms with a subject and text in German), where Django's way took 2.7 ms.
compat32's message objects and generator are not used: for this shape their MIME frame is
always the same few lines, and building and walking them cost 0.2 to 0.4 ms more. Anything
else (attachments, a non-ASCII address, another alternative) goes the way Django writes it,
so nothing is ever dropped.
"""

from __future__ import annotations

import email.charset
import email.generator
import email.policy
import email.quoprimime
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime, make_msgid

from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.core.mail.utils import DNS_NAME

_COMPAT32_SMTP = email.policy.compat32.clone(linesep="\r\n")
_FOLD_AT = 78  # compat32's max_line_length
_LINE_MAX = 998  # RFC 5322: longer lines need an encoding, not 7bit
_NEWLINES = re.compile(r"\r\n|\r|\n")  # the generator's: each becomes CRLF
_OWN_HEADERS = frozenset({"from", "to", "cc", "reply-to", "bcc", "subject"})


def as_bytes(message: EmailMessage) -> bytes:
    """The mail with CRLF line ends; the same headers and parts, whichever way it is written."""
    if not _plain_shape(message):
        return bytes(message.message(policy=email.policy.SMTP).as_bytes())
    text = _text_part(str(message.body), "plain")
    html = _html_alternative(message)
    lines: list[bytes]
    if html is None:
        lines, body = [text[0].encode("ascii")], text[1]
    else:
        alternative = _text_part(html, "html")
        boundary = _boundary(text[1], alternative[1])
        content_type = f'multipart/alternative; boundary="{boundary}"'
        lines = [_header("Content-Type", content_type), b"MIME-Version: 1.0\r\n"]
        body = (
            f"--{boundary}\r\n{text[0]}\r\n{text[1]}"
            f"\r\n--{boundary}\r\n{alternative[0]}\r\n{alternative[1]}"
            f"\r\n--{boundary}--\r\n"
        )
    subject = str(message.subject)
    lines.append(_header("Subject", subject) if subject.isascii() else _encoded_subject(subject))
    lines.append(_header("From", str(message.from_email)))
    for name, addresses in (("To", message.to), ("Cc", message.cc), ("Reply-To", message.reply_to)):
        if addresses:
            lines.append(_header(name, ", ".join(addresses)))
    names = {name.lower() for name in message.extra_headers}
    if "date" not in names:
        lines.append(_header("Date", format_datetime(datetime.now(UTC))))
    if "message-id" not in names:
        lines.append(_header("Message-ID", make_msgid(domain=str(DNS_NAME))))
    for name, value in message.extra_headers.items():
        lines.append(_header(name, str(value)))
    lines += [b"\r\n", body.encode("ascii")]
    return b"".join(lines)


def _header(name: str, value: str) -> bytes:
    """The header's line(s) as compat32 writes them.

    compat32 hands every value to `Header(value).encode()`, which splits and measures it
    however short it is: 0.15 ms for the ten header lines of an acknowledgement, more than
    writing the rest of it. A one-line ASCII value that fits in the line comes out of that
    unchanged, so it is written as it is.

    A line break of any other kind in the value (\\x1c-\\x1e, \\v, \\f; the plain shape has no
    CR or LF) becomes a space, as in a ticket's title (tickets.validation.clean_text):
    compat32 folds at it as at a line end, so the rest of the value would start a line of
    its own among the headers. Python 3.12.5 and later refuse to write such a header."""
    if value.splitlines() != [value]:
        value = " ".join(value.splitlines())
    if value.isascii() and len(name) + 2 + len(value) <= _FOLD_AT:
        return f"{name}: {value}\r\n".encode("ascii")
    return _COMPAT32_SMTP.fold_binary(name, value)


def _encoded_subject(subject: str) -> bytes:
    """Encoded words, folded once, with the line ends of SMTP. They were folded at 76 with LF,
    then re-folded at 78 by compat32, which left every line as it was (each is shorter) and
    only changed the line ends: the same bytes, in one pass instead of two."""
    folded = Header(subject, _UTF8_QP, header_name="Subject").encode(linesep="\r\n")
    return f"Subject: {folded}\r\n".encode("ascii")


class _Utf8QuotedPrintable(email.charset.Charset):
    """UTF-8 in quoted-printable encoded words, split in linear time.

    The stdlib's `header_encode_lines` measures every prefix of the text anew to find where
    an encoded word must end: quadratic, 0.13 ms for a 60-character German subject, as long
    as writing the rest of the mail. The length of a prefix is the sum of its characters'
    encoded lengths, so the same split points are found by adding them up as they come.
    """

    def __init__(self) -> None:
        super().__init__("utf-8")
        self.header_encoding = email.charset.QP

    def header_encode_lines(self, string: str, maxlengths: Iterator[int]) -> list[str | None]:
        string.encode("utf-8")  # a lone surrogate fails here, as in the stdlib
        extra = len("utf-8") + email.charset.RFC2047_CHROME_LEN
        lines: list[str | None] = []
        start = length = 0
        maxlen = next(maxlengths) - extra
        for index, character in enumerate(string):
            code = ord(character)
            width = _QP_WIDTH[code] if code < 0x80 else _qp_width(character)
            if length + width <= maxlen:
                length += width
                continue
            # As the stdlib: None when not even the first character fits on the first line.
            lines.append(None if index == 0 else _encoded_word(string[start:index]))
            start, length = index, width
            maxlen = next(maxlengths) - extra
        lines.append(_encoded_word(string[start:]))
        return lines


# The length of each octet in a header's quoted-printable, as the stdlib counts it.
_QP_WIDTH = tuple(email.quoprimime.header_length(bytes([octet])) for octet in range(256))


def _qp_width(character: str) -> int:
    return sum(_QP_WIDTH[octet] for octet in character.encode("utf-8"))


def _encoded_word(text: str) -> str:
    return email.quoprimime.header_encode(text.encode("utf-8"), "utf-8")


_UTF8_QP = _Utf8QuotedPrintable()


def _boundary(*bodies: str) -> str:
    """The generator's random boundary, drawn again while a part holds it. The generator
    compiles a regular expression for each boundary it draws, to make sure that no line of
    the parts is the boundary: 0.1 ms a mail, as long as writing the rest of it. A boundary
    that is nowhere in the parts' text cannot be such a line (their headers are the three
    written here)."""
    while True:
        # The generator's own, so that boundaries look as they always did.
        boundary = str(email.generator.Generator._make_boundary())  # type: ignore[attr-defined]
        if not any(boundary in body for body in bodies):
            return boundary


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


def _text_part(content: str, subtype: str) -> tuple[str, str]:
    """The part's header lines and its body, CRLF-ended: 7bit when the text allows it, so
    that it reads as it is; else UTF-8 quoted-printable. Ending in a line break, as Django's
    parts do. The headers, their order and the encoding are those of compat32's
    `MIMEText(text, subtype, "us-ascii")` and `set_payload(text, utf-8 quoted-printable)`."""
    content = content if content.endswith("\n") else content + "\n"
    if content.isascii() and all(len(line) <= _LINE_MAX for line in content.splitlines()):
        charset, encoding = "us-ascii", "7bit"
    else:
        charset, encoding = "utf-8", "quoted-printable"
        # As email.charset: the UTF-8 octets, one code point each, for quoprimime.
        content = email.quoprimime.body_encode(content.encode("utf-8").decode("latin-1"))
    head = (
        f'Content-Type: text/{subtype}; charset="{charset}"\r\n'
        f"MIME-Version: 1.0\r\nContent-Transfer-Encoding: {encoding}\r\n"
    )
    return head, _NEWLINES.sub("\r\n", content)
