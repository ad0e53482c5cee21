"""Read a raw message into the few things processing needs, whatever the sender's software did.

Mail in the wild has unknown charsets, broken encoded-words, 8-bit headers, missing
Message-IDs and MIME trees that lie about themselves. Nothing here raises on any input: a
header that cannot be read is empty, a body that cannot be decoded is decoded with
replacement characters. Every string returned is safe to store (no NUL, no lone surrogate).
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import html
import re
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from email.policy import Policy
from email.utils import getaddresses, parseaddr
from typing import Any, TypeVar, overload

import nh3

# Tags kept in a message's HTML when it has no text part: structure and emphasis, no
# script, style, forms or remote content (images arrive as attachments instead).
SAFE_HTML_TAGS = frozenset(
    {"p", "br", "hr", "div", "span", "b", "strong", "i", "em", "u", "s", "code", "pre",
     "blockquote", "ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6",
     "table", "thead", "tbody", "tr", "th", "td"}
)  # fmt: skip
_MESSAGE_ID = re.compile(r"<[^<>\s]{1,900}>")
_BLOCK_END = re.compile(r"<\s*(br|/p|/div|/li|/tr|/h[1-6]|/blockquote|/table)\b[^>]*>", re.I)
_ENCODED_WORD_LEFT = re.compile(r"=\?[^?\s]*\?[bqBQ]\?[^?\s]*\?=")


class _HeaderClasses(HeaderRegistry):
    """The standard header registry, making each header class once. The stdlib's builds a
    new class with type() for every header it reads, which was a quarter of parsing a
    message here (bench/README.md, "Mail in"); the class depends only on the kind of header."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[type, type] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        kind = self.registry.get(name.lower(), self.default_class)
        made = self._made.get(kind)
        if made is None:
            made = self._made[kind] = super().__getitem__(name)
        return made


_T = TypeVar("_T")


class _HeaderOnceMessage(EmailMessage):
    """An EmailMessage that parses each of its headers once. The stdlib parses a header anew
    on every get(), and the feed parser, get_content_type(), get_body(), is_attachment() and
    get_param() read Content-Type again and again: a short plain mail cost 13 header parses
    for the 6 headers read, a multipart one with an attachment 54 for 15. Parsing each once
    took parse_message from 1.3 to 0.7 ms of CPU for the one and from 5.2 to 1.8 ms for the
    other.

    A parsed header is reused only while the very (name, value) pair it was made from is still
    the first of that name in the message and the policy is the same one. Every change to the
    headers puts new pairs in or takes that one out, by whatever path (set_param, set_boundary,
    make_mixed and clear_content rewrite the list without a public setter), so there is no
    invalidation to forget. That needs the pair and what it parses into to be immutable, so
    only a tuple of two plain strings parsed into a header object is kept (a header set by
    assignment is stored parsed already, and compat32's Header objects can change)."""

    _headers: list[tuple[str, Any]]  # the stdlib's, which its type stubs leave out

    def __init__(self, policy: Policy[Any] | None = None) -> None:
        super().__init__(policy)
        self._parsed: dict[str, tuple[tuple[str, Any], Policy[Any], BaseHeader]] = {}

    def __getstate__(self) -> dict[str, Any]:
        """A copy starts with nothing parsed: the generator deep-copies parts to rewrite them
        (an 8-bit body in a 7-bit output), and copying parse trees with them would be slower
        and recurse deeper than copying the raw headers."""
        state = dict(vars(self))
        state["_parsed"] = {}
        return state

    @overload
    def get(self, name: str, failobj: None = None) -> Any | None: ...
    @overload
    def get(self, name: str, failobj: _T) -> Any | _T: ...
    def get(self, name: str, failobj: object = None) -> Any:
        name = name.lower()
        for pair in self._headers:
            if pair[0].lower() != name:
                continue
            known = self._parsed.get(name)
            if known is not None and known[0] is pair and known[1] is self.policy:
                return known[2]
            header = self.policy.header_fetch_parse(*pair)
            if type(pair) is tuple and type(pair[1]) is str and isinstance(header, BaseHeader):
                self._parsed[name] = (pair, self.policy, header)
            return header
        return failobj


# policy.default, with the header classes made once and each header of a message parsed once.
POLICY = policy.default.clone(header_factory=_HeaderClasses(), message_factory=_HeaderOnceMessage)


@dataclass(frozen=True)
class ParsedAttachment:
    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class DeliveryReport:
    """What a delivery-status notification (RFC 3464) says about a mail we sent."""

    message_ids: tuple[str, ...]
    status: str  # "5.1.1", or "" when the report carries none
    action: str  # "failed", "delayed", ... lower case
    diagnostic: str


@dataclass(frozen=True)
class ParsedMessage:
    message_id: str  # as sent, or "<sha256-...@local>" made from the raw bytes
    has_message_id: bool
    from_address: str  # lower-cased; "" when there is none
    from_name: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    text: str  # the text part, else a text rendering of the HTML part
    html: str  # the HTML part, sanitized; "" when there is none
    attachments: tuple[ParsedAttachment, ...]
    # The raw header values the loop guard decides on ("" when absent).
    auto_submitted: str = ""
    precedence: str = ""
    x_autoreply: str = ""
    x_auto_response_suppress: str = ""
    return_path: str | None = None  # None: no Return-Path header at all
    report: DeliveryReport | None = None
    notes: tuple[str, ...] = field(default=())


def safe_text(value: str) -> str:
    """No NUL (PostgreSQL refuses it) and no lone surrogates (undecodable 8-bit header bytes
    come out of the email package as surrogate escapes): decode them as UTF-8 or replace."""
    value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")


def parse_message(raw: bytes) -> ParsedMessage:
    """Never raises on any bytes (tests/intake/test_fuzz.py feeds it arbitrary ones)."""
    msg = message_from_bytes(raw, policy=POLICY)
    message_id = _first_id(_header(msg, "Message-ID"))
    body_part, text, html_body = _body(msg)
    attachments, forwarded_text = _attachments(msg, body_part)
    if not text.strip() and forwarded_text:
        text = forwarded_text
    name, address = _from(msg)
    return ParsedMessage(
        message_id=message_id or f"<sha256-{hashlib.sha256(raw).hexdigest()}@local>",
        has_message_id=bool(message_id),
        from_address=address,
        from_name=name,
        to=_addresses(msg, "To"),
        cc=_addresses(msg, "Cc"),
        subject=" ".join(_header(msg, "Subject").split())[:998],
        in_reply_to=tuple(_MESSAGE_ID.findall(_header(msg, "In-Reply-To")))[:50],
        references=tuple(_MESSAGE_ID.findall(_header(msg, "References")))[-50:],
        text=text,
        html=html_body,
        attachments=tuple(attachments),
        auto_submitted=_header(msg, "Auto-Submitted").strip().lower(),
        precedence=_header(msg, "Precedence").strip().lower(),
        x_autoreply=_header(msg, "X-Autoreply").strip().lower(),
        x_auto_response_suppress=_header(msg, "X-Auto-Response-Suppress").strip(),
        return_path=_header(msg, "Return-Path").strip() if "Return-Path" in msg else None,
        report=delivery_report(msg, raw),
    )


def _header(msg: Message, name: str) -> str:
    """The decoded header, or its raw text when the policy cannot parse it; never raises."""
    try:
        value = msg.get(name)
        return "" if value is None else safe_text(str(value))
    except Exception:  # noqa: BLE001  (any defect in any header must not stop the message)
        for key, raw_value in msg.raw_items():
            if key.lower() == name.lower():
                return safe_text(str(raw_value))
        return ""


def _first_id(value: str) -> str:
    found = _MESSAGE_ID.search(value)
    return found.group(0) if found else ""


def _from(msg: Message) -> tuple[str, str]:
    for name in ("From", "Sender", "Reply-To"):
        found = _address_pairs(msg, name)
        if found:
            return found[0]
    return "", ""


def _addresses(msg: Message, name: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(address for _, address in _address_pairs(msg, name)))[:100]


def _address_pairs(msg: Message, name: str) -> list[tuple[str, str]]:
    """(display name, lower-cased address) pairs; only addresses with one @ and no spaces.

    A plain `address` or `Display Name <address>` (nearly every From and To) is read by a
    pattern, as policy.default reads it (tests/intake/test_parse.py compares the two), and
    anything else by policy.default: its parse was a fifth of parse_message's CPU."""
    raw = _first_raw_value(msg, name)
    plain = _PLAIN_ADDRESS.fullmatch(raw) if raw is not None and "=?" not in raw else None
    if plain is not None:
        display, address = plain.group(1) or "", plain.group(2) or plain.group(3)
        return _cleaned_pairs([(display, address)])
    return _parsed_address_pairs(msg, name)


_ATOMS = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM_ADDRESS = rf"{_ATOMS}(?:\.{_ATOMS})*@{_ATOMS}(?:\.{_ATOMS})*"
# `address`, or a display name of atoms then `<address>`, with blanks and folding around.
_PLAIN_ADDRESS = re.compile(
    rf"[ \t\r\n]*(?:((?:{_ATOMS}[ \t\r\n]+)*{_ATOMS})[ \t\r\n]*<({_DOT_ATOM_ADDRESS})>"
    rf"|({_DOT_ATOM_ADDRESS}))[ \t\r\n]*"
)


def _first_raw_value(msg: Message, name: str) -> str | None:
    """The first header of this name as it came, if it came as plain text (not one set by
    assignment, nor one with undecodable bytes)."""
    name = name.lower()
    for key, value in msg.raw_items():
        if key.lower() == name:
            return value if type(value) is str and value.isascii() else None
    return None


def _parsed_address_pairs(msg: Message, name: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    try:
        header = msg.get(name)
        groups = getattr(header, "addresses", None)
        if groups is not None:
            pairs = [(a.display_name, a.addr_spec) for a in groups]
        elif header is not None:
            pairs = getaddresses([str(header)])
    except Exception:  # noqa: BLE001  (fall back to the lenient stdlib parser)
        raw = next((str(v) for k, v in msg.raw_items() if k.lower() == name.lower()), "")
        pairs = [parseaddr(part) for part in raw.split(",")]
    return _cleaned_pairs(pairs)


def _cleaned_pairs(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    result = []
    for display, address in pairs:
        clean = safe_text(address).strip().strip("<>").lower()
        if clean.count("@") == 1 and not any(c.isspace() for c in clean) and len(clean) <= 254:
            result.append((" ".join(safe_text(display).split())[:200], clean))
    return result


def decode_part(part: Message) -> str:
    """A text part's content in its declared charset; unknown charsets and bad bytes are
    read as UTF-8 with replacement characters. Undeclared 8-bit text is usually UTF-8."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        payload = None
    if not isinstance(payload, bytes):
        payload = str(part.get_payload() or "").encode("utf-8", "surrogateescape")
    charset = str(part.get_content_charset("") or "")
    try:
        codec = codecs.lookup(charset).name if charset else ""
    except (LookupError, ValueError):
        codec = ""
    if codec in ("", "ascii"):
        try:
            return safe_text(payload.decode("utf-8"))
        except UnicodeDecodeError:
            codec = "windows-1252"  # what mislabelled Western mail nearly always is
    try:
        return safe_text(payload.decode(codec, "replace"))
    except Exception:  # noqa: BLE001  (a codec that is not a text codec, e.g. "base64")
        return safe_text(payload.decode("utf-8", "replace"))


def _body(msg: Message) -> tuple[Message | None, str, str]:
    """The chosen body part, its text, and the sanitized HTML when the body is HTML."""
    for kind in ("plain", "html"):
        try:
            part = msg.get_body(preferencelist=(kind,)) if isinstance(msg, EmailMessage) else None
        except Exception:  # noqa: BLE001
            part = None
        if part is None:
            continue
        content = decode_part(part)
        if kind == "plain":
            return part, content.replace("\r\n", "\n"), ""
        clean = sanitize_html(content)
        return part, html_to_text(clean), clean
    if not msg.is_multipart() and msg.get_content_maintype() in ("text", ""):
        return msg, decode_part(msg).replace("\r\n", "\n"), ""  # e.g. text/enriched
    return None, "", ""


def sanitize_html(content: str) -> str:
    return nh3.clean(content, tags=set(SAFE_HTML_TAGS), link_rel="noopener noreferrer nofollow")


def html_to_text(content: str) -> str:
    """Safe HTML as readable text: block ends become line breaks, tags go, entities decode."""
    with_breaks = _BLOCK_END.sub("\n", content)
    text = html.unescape(nh3.clean(with_breaks, tags=set()))
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return safe_text(re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip())


def _walk(part: Message) -> list[Message]:
    """Leaf parts and attached messages; a forwarded message stays one part, not its tree."""
    if part.get_content_maintype() == "message" or not part.is_multipart():
        return [part]
    payload = part.get_payload()
    children = payload if isinstance(payload, list) else []
    return [leaf for child in children if isinstance(child, Message) for leaf in _walk(child)]


def _attachments(msg: Message, body: Message | None) -> tuple[list[ParsedAttachment], str]:
    """Every part that is not the body, as a file; the first forwarded message's text too."""
    found: list[ParsedAttachment] = []
    forwarded_text = ""
    related_text = {id(p) for p in _alternatives_of(msg, body)}
    for part in _walk(msg):
        if part is body or id(part) in related_text:
            continue
        content_type = part.get_content_type()
        if content_type == "message/rfc822":
            content, inner = _forwarded(part)
            if inner is not None and not forwarded_text:
                forwarded_text = _body(inner)[1]
            name = _filename(part) or _subject_name(inner) or "forwarded.eml"
        elif part.get_content_maintype() == "message":  # delivery-status and the like
            content = _status_text(part).encode("utf-8")
            name = _filename(part) or _default_name(content_type, len(found) + 1)
        else:
            content = _payload_bytes(part)
            name = _filename(part) or _default_name(content_type, len(found) + 1)
        found.append(ParsedAttachment(name, content_type, content))
        if len(found) >= 100:  # an absurd tree is not stored part by part
            break
    return found, forwarded_text


def _alternatives_of(msg: Message, body: Message | None) -> list[Message]:
    """The other renderings of the body (the HTML beside the text): not attachments."""
    if body is None:
        return []
    for part in _all_multiparts(msg):
        if part.get_content_type() != "multipart/alternative":
            continue
        payload = part.get_payload()
        leaves = [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []
        if any(p is body for p in leaves):
            return [p for p in leaves if p.get_content_maintype() == "text"]
    return []


def _all_multiparts(part: Message) -> list[Message]:
    if not part.is_multipart() or part.get_content_maintype() == "message":
        return []
    payload = part.get_payload()
    children = payload if isinstance(payload, list) else []
    return [part] + [m for c in children if isinstance(c, Message) for m in _all_multiparts(c)]


def _forwarded(part: Message) -> tuple[bytes, Message | None]:
    payload = part.get_payload()
    inner = payload[0] if isinstance(payload, list) and payload else None
    if isinstance(inner, Message):
        return _message_bytes(inner), inner
    return _payload_bytes(part), None


def _message_bytes(message: Message) -> bytes:
    """A forwarded message as the generator writes it; or, where the generator raises (bytes
    in a header it cannot encode again), rebuilt from the headers and parts as they came,
    rather than losing its content."""
    with contextlib.suppress(Exception):
        return message.as_bytes(policy=POLICY.clone(linesep="\r\n"))
    head = "".join(f"{name}: {value}\r\n" for name, value in message.raw_items())
    payload = message.get_payload()
    if not isinstance(payload, list):
        body = str(payload or "").encode("utf-8", "surrogateescape")
    elif message.get_content_maintype() == "message":
        body = b"".join(_message_bytes(inner) for inner in payload if isinstance(inner, Message))
    else:
        marker = b"--" + str(message.get_boundary() or "").encode("utf-8", "surrogateescape")
        parts = [_message_bytes(inner) for inner in payload if isinstance(inner, Message)]
        body = b"".join(marker + b"\r\n" + part + b"\r\n" for part in parts) + marker + b"--\r\n"
    return head.encode("utf-8", "surrogateescape") + b"\r\n" + body


def _payload_bytes(part: Message) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001
        payload = None
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload := part.get_payload(), list):  # a message/* part's messages
        return b"".join(_message_bytes(inner) for inner in payload if isinstance(inner, Message))
    return str(payload or "").encode("utf-8", "surrogateescape")


def _filename(part: Message) -> str:
    try:
        name = part.get_filename() or part.get_param("name") or ""
    except Exception:  # noqa: BLE001
        name = ""
    if isinstance(name, tuple):  # an RFC 2231 value the stdlib left undecoded
        name = str(name[2])
    name = safe_text(str(name))
    if _ENCODED_WORD_LEFT.search(name):  # some clients encode names the RFC 2047 way
        name = _decode_words(name)
    return " ".join(name.split())[:200]


def _decode_words(value: str) -> str:
    try:
        return safe_text(str(POLICY.header_factory("subject", value)))
    except Exception:  # noqa: BLE001
        return value


def _subject_name(inner: Message | None) -> str:
    if inner is None:
        return ""
    subject = re.sub(r"[^\w .-]", "", _header(inner, "Subject")).strip()[:80]
    return f"{subject}.eml" if subject else ""


def _default_name(content_type: str, index: int) -> str:
    extension = {"text/plain": "txt", "text/html": "html", "image/png": "png",
                 "image/jpeg": "jpg", "image/gif": "gif", "application/pdf": "pdf",
                 "text/rfc822-headers": "txt", "message/delivery-status": "txt"}  # fmt: skip
    return f"part-{index}.{extension.get(content_type, 'bin')}"


def delivery_report(msg: Message, raw: bytes) -> DeliveryReport | None:
    """The delivery-status report of a multipart/report message (RFC 3464), with the
    Message-IDs of the mail it is about, from the returned message or its headers."""
    if msg.get_content_type() != "multipart/report":
        return None
    status = action = diagnostic = ""
    ids: list[str] = []
    for part in _walk(msg):
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            fields = _status_fields(part)
            status = status or fields.get("status", "")
            action = action or fields.get("action", "").lower()
            diagnostic = diagnostic or fields.get("diagnostic-code", "")
        elif kind == "message/rfc822":
            inner = _forwarded(part)[1]
            if inner is not None:
                ids += _MESSAGE_ID.findall(_header(inner, "Message-ID"))
        elif kind == "text/rfc822-headers":
            headers = message_from_bytes(_payload_bytes(part), policy=POLICY)
            ids += _MESSAGE_ID.findall(_header(headers, "Message-ID"))
    if not ids:  # some servers quote the original in the text: look for any Message-ID line
        for line in re.findall(rb"(?im)^message-id:\s*(<[^<>\s]{1,900}>)", raw):
            ids.append(safe_text(line.decode("utf-8", "replace")))
    return DeliveryReport(
        tuple(dict.fromkeys(ids)), status.split()[0] if status else "", action, diagnostic
    )


def _status_text(part: Message) -> str:
    """The header blocks of a message/* part that is not a whole message, as text."""
    payload = part.get_payload()
    blocks = payload if isinstance(payload, list) else []
    try:
        text = "\n".join(str(b) for b in blocks if isinstance(b, Message))
    except Exception:  # noqa: BLE001
        text = ""
    return safe_text(text or _payload_bytes(part).decode("utf-8", "replace"))


def _status_fields(part: Message) -> dict[str, str]:
    """Fields of the per-message and per-recipient blocks, the first value of each name."""
    fields: dict[str, str] = {}
    for line in _status_text(part).splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip():
            fields.setdefault(name.strip().lower(), safe_text(" ".join(value.split()))[:500])
    return fields


# Quoted history, as the common clients write it: everything from the first marker on is
# history or signature, not what the sender wrote now.
_CUT_MARKERS = (
    re.compile(r"^\s*-{2,}\s*Original Message\s*-{2,}\s*$", re.I),  # Outlook
    re.compile(r"^\s*-{2,}\s*Forwarded message\s*-{2,}\s*$", re.I),  # Gmail forward
    re.compile(r"^_{10,}\s*$"),  # Outlook on the web's rule above "From:"
    re.compile(r"^-- ?$"),  # RFC 3676 signature separator
    re.compile(r"^Sent from my \w+", re.I),
)
_OUTLOOK_FROM = re.compile(r"^\s*\*?From:\*?\s", re.I)
_OUTLOOK_NEXT = re.compile(r"^\s*\*?(Sent|Date|To|Subject):\*?\s", re.I)
_WROTE = re.compile(r"^(On\s.+\swrote|Am\s.+\sschrieb|Le\s.+\sa écrit)\s*:\s*$", re.I | re.S)


def trim_reply(text: str) -> str:
    """What the sender wrote in a reply, without the quoted history and signature below it.

    Returns the text unchanged when trimming would leave nothing (a message that is all
    quote is better kept whole than lost).
    """
    lines = text.replace("\r\n", "\n").split("\n")
    cut = len(lines)
    for index, line in enumerate(lines):
        if _is_history_start(lines, index, line):
            cut = index
            break
    kept = lines[:cut]
    while kept and (not kept[-1].strip() or kept[-1].lstrip().startswith(">")):
        kept.pop()  # a bottom quote ("> ..." lines at the end)
    trimmed = "\n".join(kept).strip()
    return trimmed or text.strip()


def _is_history_start(lines: list[str], index: int, line: str) -> bool:
    if any(marker.match(line) for marker in _CUT_MARKERS):
        return True
    if _OUTLOOK_FROM.match(line):
        following = lines[index + 1 : index + 4]
        return any(_OUTLOOK_NEXT.match(next_line) for next_line in following)
    if _WROTE.match(line.strip()):
        return True
    # Gmail wraps a long attribution line: "On Tue, ... <bob@acme.test>\nwrote:"
    joined = " ".join(part.strip() for part in lines[index : index + 2])
    return line.startswith("On ") and bool(_WROTE.match(joined))
