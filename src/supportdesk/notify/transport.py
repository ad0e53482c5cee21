"""Mail out: hand one message to the mail server named by SUPPORTDESK_EMAIL_URL.

Called from outbox handlers only, never inside a request: a slow or absent mail server must
delay mail, not a page. `send` returns once the server has answered 250 to DATA, so a handler
marks a mail sent only after the server took responsibility for it; every failure leaves as a
`DeliveryError` whose `permanent` flag tells the outbox whether a retry can help.

Why smtplib and not Django's smtp EmailBackend: the backend calls `sendmail`, which delivers to
the recipients a server accepted and silently drops the ones it refused (the refusals are
returned and the backend throws them away), and it hides which command a reply answered. Here
each command is sent by hand: a message goes to all of its recipients or to none (RSET on any
refusal, so a retry never doubles a copy that already went out), and an error names the command,
the server's code and its text. Notify sends one message per recipient; inside `session()` the
mails of one run share one connection (a handshake, EHLO and QUIT per mail were most of a
mail's cost in bench/), and a connection that failed is closed, never reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import smtplib
import ssl
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import parseaddr
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import EmailMessage
from django.core.mail.utils import DNS_NAME
from django.utils.encoding import punycode

from supportdesk.errors import DeliveryError
from supportdesk.notify import compose

VARIABLE = "SUPPORTDESK_EMAIL_URL"
DEFAULT_PORTS = {"smtp": 25, "smtp+tls": 587, "smtps": 465}
DEFAULT_TIMEOUT = 10.0
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_SAFE_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+=-]{0,149}")


@dataclass(frozen=True)
class EmailTarget:
    """A parsed SUPPORTDESK_EMAIL_URL. The password stays out of repr and str, so that a
    target in a log line or an error message cannot leak it."""

    scheme: str
    host: str
    port: int
    username: str = ""
    password: str = field(default="", repr=False)
    timeout: float = DEFAULT_TIMEOUT

    @property
    def starttls(self) -> bool:
        return self.scheme == "smtp+tls"

    @property
    def implicit_tls(self) -> bool:
        return self.scheme == "smtps"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_email_url(url: str) -> EmailTarget:
    """Read `smtp://`, `smtp+tls://` or `smtps://[user:password@]host[:port][?timeout=S]`.

    User and password are percent-decoded; `/ ? # %` inside them must be percent-encoded.
    Raises ImproperlyConfigured naming SUPPORTDESK_EMAIL_URL; no message repeats any part of
    the URL after the scheme, since a malformed URL may have split the password anywhere.
    """
    url = url.strip()
    scheme, separator, _ = url.partition("://")
    if not separator or not _SCHEME.fullmatch(scheme):
        raise _bad("must start with smtp://, smtp+tls:// or smtps://")
    scheme = scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise _bad(f"has the unknown scheme {scheme!r}; use smtp://, smtp+tls:// or smtps://")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _bad(
            "is malformed: the port must be a number from 1 to 65535, and a / ? # or % in "
            "the user name or password must be percent-encoded (%2F %3F %23 %25)"
        ) from None
    if not parts.hostname:
        raise _bad("names no host, e.g. smtp://mail.example.com:25")
    if parts.path not in ("", "/") or parts.fragment:
        raise _bad(
            "is malformed: nothing may follow the host and port but ?timeout=S; a / or # in "
            "the password must be percent-encoded (%2F %23)"
        )
    username, password = unquote(parts.username or ""), unquote(parts.password or "")
    if not (username.isascii() and password.isascii()):
        # smtplib sends AUTH as ASCII only; better to say so at once than fail every mail.
        raise _bad("has a non-ASCII user name or password, which smtplib's AUTH cannot send")
    return EmailTarget(
        scheme=scheme,
        host=parts.hostname,
        port=port or DEFAULT_PORTS[scheme],
        username=username,
        password=password,
        timeout=_timeout(parts.query),
    )


def _timeout(query: str) -> float:
    timeout = DEFAULT_TIMEOUT
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key != "timeout":
            # The key is not echoed: with an unencoded ? in the password it is a piece of it.
            raise _bad("has an unknown parameter; the only one is ?timeout=S (seconds)")
        try:
            timeout = float(value)
        except ValueError:
            timeout = 0.0
        if not 0 < timeout <= 3600:  # an hour is far past any relay's patience
            raise _bad("has a bad timeout: use ?timeout=S, S seconds above 0 and up to 3600")
    return timeout


def _bad(problem: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{VARIABLE} {problem}.")


def eml_path(message_id: str) -> Path:
    """Where file mode keeps the mail with this Message-ID: the same path on every attempt,
    so a retried mail replaces its earlier copy instead of adding one."""
    bare = message_id.strip().strip("<>")
    if _SAFE_FILE_NAME.fullmatch(bare):
        name = bare
    else:
        # Readable where possible, and a digest so that two ids cleaned alike stay apart.
        cleaned = re.sub(r"[^A-Za-z0-9._@+=-]", "_", bare)[:100].lstrip(".")
        name = f"{cleaned}-{hashlib.sha256(bare.encode()).hexdigest()[:16]}"
    return Path(settings.MAIL_OUT_DIR) / f"{name}.eml"


def send(message: EmailMessage) -> None:
    """Deliver one message to every one of its recipients (To, Cc and Bcc), or to none.

    With SUPPORTDESK_EMAIL_URL empty the message is written to MAIL_OUT_DIR instead. Returns
    once the server answered 250 to DATA (or the file is in place). Raises DeliveryError:
    permanent for an SMTP 5xx reply (the server refused this message for good, or refused our
    credentials: retrying a wrong password only locks the account) and for an address that
    cannot be sent to; retryable for everything about the server or the path to it (refused,
    reset or timed-out connections, DNS, a dropped connection, any 4xx reply, TLS problems,
    a server that does not offer STARTTLS). Raises ImproperlyConfigured for a malformed URL,
    which the outbox retries like any other error until the operator fixes it.
    """
    sender = _envelope_address(message.from_email or settings.DEFAULT_FROM_EMAIL)
    recipients = [_envelope_address(address) for address in message.recipients()]
    if not recipients:
        raise DeliveryError("The mail has no recipients.", permanent=True)
    url = str(settings.EMAIL_URL or "").strip()
    if not url:
        _write_file(message)
        return
    _deliver(_target(url), sender, recipients, compose.as_bytes(message))


@lru_cache(maxsize=8)
def _target(url: str) -> EmailTarget:
    """The parsed URL, once per URL: parsing it cost 12 us a mail (a URL that does not parse
    is not kept, and raises again on the next mail)."""
    return parse_email_url(url)


@lru_cache(maxsize=1024)
def _envelope_address(address: str) -> str:
    """The bare address for MAIL FROM or RCPT TO, its domain IDNA-encoded (Django does the same
    in its headers); a non-ASCII local part would need SMTPUTF8, which we do not send.
    Kept for the addresses seen last (the sender's is in every mail): parseaddr cost 18 us
    an address; an address refused raises again each time."""
    if "\r" in address or "\n" in address:
        raise DeliveryError("A mail address contains a line break.", permanent=True)
    addr = parseaddr(address)[1]
    local, at, domain = addr.rpartition("@")
    if not (local and at and domain) or not local.isascii():
        raise DeliveryError(f"Cannot send to {address!r}: not a mail address.", permanent=True)
    try:
        return f"{local}@{domain if domain.isascii() else punycode(domain)}"
    except UnicodeError:
        raise DeliveryError(f"Cannot send to {address!r}: bad domain.", permanent=True) from None


def _write_file(message: EmailMessage) -> None:
    """Write the mail where an operator or a test can read it; atomically, so that a reader
    never sees half a mail, and by Message-ID, so that a retry overwrites its first copy."""
    msg = message.message()
    path = eml_path(str(msg["Message-ID"]))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(msg.as_bytes())
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
    except OSError as error:
        raise DeliveryError(f"Cannot write the mail to {path}: {error}") from None


_local = threading.local()


@contextlib.contextmanager
def session() -> Iterator[None]:
    """Within it, `send` keeps its SMTP connection open for the next mail to the same server,
    and closes it at the end. A connection the server dropped while idle is replaced once,
    before anything of the next mail was accepted; any failure closes the connection."""
    if getattr(_local, "connections", None) is not None:  # nested: the outer one owns them
        yield
        return
    _local.connections = {}
    try:
        yield
    finally:
        connections, _local.connections = _local.connections, None
        for smtp in connections.values():
            _close(smtp)


@dataclass
class _Progress:
    """The command under way, so that an error says which one the server (or the line) failed."""

    step: str = "connect"


def _deliver(target: EmailTarget, sender: str, recipients: list[str], data: bytes) -> None:
    """One message, on the session's open connection or a new one; any failure becomes a
    DeliveryError and closes the connection."""
    connections: dict[EmailTarget, smtplib.SMTP] | None = getattr(_local, "connections", None)
    reused = connections.pop(target, None) if connections is not None else None
    if reused is not None:
        progress = _Progress(step="MAIL FROM")
        try:
            _transaction(reused, progress, sender, recipients, data)
        except BaseException as error:  # noqa: BLE001  (classified and raised below)
            _close(reused)
            idle_drop = isinstance(error, smtplib.SMTPServerDisconnected) and (
                progress.step.startswith("MAIL FROM")
            )
            if not idle_drop:
                raise _classified(target, progress, error) from None
            # Dropped while idle, before this mail began: start again on a new connection.
        else:
            connections[target] = reused  # type: ignore[index]
            return
    smtp = _session_for(target, sender, recipients, data)
    if connections is not None:
        connections[target] = smtp
    else:
        _close(smtp)


def _session_for(
    target: EmailTarget, sender: str, recipients: list[str], data: bytes
) -> smtplib.SMTP:
    """Connect, greet, secure, log in and send the message; the open connection is returned
    to be reused or closed by the caller, and closed here on any failure."""
    progress = _Progress()
    smtp: smtplib.SMTP | None = None
    try:
        smtp = _connect(target)
        progress.step = "EHLO"
        smtp.ehlo_or_helo_if_needed()
        if target.starttls:
            progress.step = "STARTTLS"
            code, reply = smtp.starttls(context=ssl.create_default_context())
            if code != 220:  # 220: ready to start TLS
                raise smtplib.SMTPResponseException(code, reply)
            smtp.ehlo()
        if target.username:
            progress.step = "AUTH"
            smtp.login(target.username, target.password)
        _transaction(smtp, progress, sender, recipients, data)
    except BaseException as error:  # noqa: BLE001  (classified and raised below)
        if smtp is not None:
            _close(smtp)
        raise _classified(target, progress, error) from None
    return smtp


def _classified(target: EmailTarget, progress: _Progress, error: BaseException) -> BaseException:
    if isinstance(error, smtplib.SMTPNotSupportedError):
        # Never fall back to plain text: the password and the mail would cross unencrypted.
        return _error(target, f"{progress.step}: the server does not offer it ({error})")
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return _recipients_refused(target, error.recipients)
    if isinstance(error, smtplib.SMTPResponseException):
        detail = f"{progress.step}: {_reply(error.smtp_code, error.smtp_error)}"
        return _error(target, detail, permanent=_is_permanent(error.smtp_code))
    if isinstance(error, (smtplib.SMTPException, OSError)):
        detail = f"{progress.step}: {type(error).__name__}: {error}"
        return _error(target, detail.rstrip(": "))
    return error


def _connect(target: EmailTarget) -> smtplib.SMTP:
    # DNS_NAME is Django's cached FQDN: smtplib would otherwise look it up on every connect.
    local_hostname = str(DNS_NAME.get_fqdn())
    if target.implicit_tls:
        return smtplib.SMTP_SSL(
            target.host,
            target.port,
            local_hostname=local_hostname,
            timeout=target.timeout,
            context=ssl.create_default_context(),
        )
    return smtplib.SMTP(
        target.host, target.port, local_hostname=local_hostname, timeout=target.timeout
    )


def _transaction(
    smtp: smtplib.SMTP, progress: _Progress, sender: str, recipients: list[str], data: bytes
) -> None:
    """MAIL, every RCPT, DATA. Any refused recipient aborts the message for all of them, so
    that a retry resends nothing the server has already accepted."""
    progress.step = f"MAIL FROM <{sender}>"
    options = ["BODY=8BITMIME"] if smtp.has_extn("8bitmime") and not data.isascii() else []
    code, reply = smtp.mail(sender, options)
    if code != 250:
        raise smtplib.SMTPResponseException(code, reply)
    refused: dict[str, tuple[int, bytes]] = {}
    for recipient in recipients:
        progress.step = f"RCPT TO <{recipient}>"
        code, reply = smtp.rcpt(recipient)
        if code not in (250, 251):
            refused[recipient] = (code, reply)
        if code == 421:  # the server is closing the session: stop asking
            break
    if refused:
        progress.step = "RSET"
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.rset()
        raise smtplib.SMTPRecipientsRefused(refused)
    progress.step = "DATA"
    smtp.data(data)


def _recipients_refused(
    target: EmailTarget, refused: dict[str, tuple[int, bytes]]
) -> DeliveryError:
    """Permanent only when every refusal is a 5xx: one 4xx means a retry may still deliver."""
    details = "; ".join(
        f"<{address}>: {_reply(code, reply)}" for address, (code, reply) in refused.items()
    )
    permanent = all(_is_permanent(code) for code, _ in refused.values())
    return _error(target, f"RCPT TO refused {details}", permanent=permanent)


def _is_permanent(code: int) -> bool:
    # RFC 5321: 5yz is a permanent negative reply; 4yz and anything unexpected may pass.
    return 500 <= code < 600


def _reply(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return f"{code} {' '.join(text.split())}".strip()


def _error(target: EmailTarget, detail: str, *, permanent: bool = False) -> DeliveryError:
    message = f"SMTP {target}: {detail}"
    if len(target.password) >= 3:  # shorter ones would garble the text
        # A server may echo what it was sent; the password must not reach a log or a page.
        message = message.replace(target.password, "***")
    return DeliveryError(message, permanent=permanent)


def _close(smtp: smtplib.SMTP) -> None:
    """QUIT politely; a failure here comes after the outcome is known and must not change it."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()
