"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, in a thread, with switchable failures.

Tests talk SMTP to it over TCP exactly as production talks to a relay, so a test of mail out
exercises the real client code; the failure switches (refused connections, 4xx and 5xx
replies) stand in for a relay's bad days without any mock.
"""

from __future__ import annotations

import contextlib
import email.policy
import socket
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A port nobody listens on now. aiosmtpd's Controller(port=0) cannot report the port the
    kernel picked, so the kernel is asked first and the port handed to the controller."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Delivery:
    """One accepted message: the envelope as the client gave it, and the parsed message."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes
    peer: tuple[str, int] = ("", 0)  # the client's address and port: one per connection


class SmtpSink:
    """An SMTP server that keeps what it accepts, and fails on demand.

    `.messages` are parsed with `email.policy.default`. The failure switches apply to the next
    command the server reads, so a test flips them between two sends.
    """

    def __init__(self, host: str = HOST) -> None:
        self.host = host
        self._lock = threading.Condition()
        self._deliveries: list[Delivery] = []
        self._logins: list[tuple[str, str]] = []
        self._answer: str | None = None
        self._rejected: dict[str, str] = {}
        self._credentials: tuple[str, str] | None = None
        self._controller: Controller | None = None
        for attempt in range(5):
            self.port = free_port(host)
            try:
                self._start()
                break
            except OSError:  # somebody took the port between the probe and the bind
                if attempt == 4:
                    raise

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    # What arrived.

    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    @property
    def messages(self) -> list[EmailMessage]:
        return [delivery.message for delivery in self.deliveries]

    def message_ids(self) -> list[str]:
        """Message-ID of every accepted message in arrival order, repeats included."""
        return [str(message["Message-ID"]) for message in self.messages]

    def recipients(self) -> list[str]:
        """Envelope recipients (RCPT TO, so Bcc included) of every accepted message, in order."""
        return [address for delivery in self.deliveries for address in delivery.rcpt_tos]

    @property
    def logins(self) -> list[tuple[str, str]]:
        """(user, password) of every AUTH the server was offered, accepted or not."""
        with self._lock:
            return list(self._logins)

    def wait_for(self, count: int, timeout: float = 10) -> bool:
        """Wait until at least `count` messages were accepted; False if the time ran out."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._deliveries) >= count, timeout)

    def clear(self) -> None:
        with self._lock:
            self._deliveries.clear()
            self._logins.clear()

    # Failure switches.

    def refuse_connections(self) -> None:
        """Stop listening: a connection attempt now gets ECONNREFUSED."""
        self._stop_controller()

    def resume(self) -> None:
        """Listen again on the same port (clients keep their configured URL)."""
        if self._controller is not None:
            return
        deadline = time.monotonic() + 5
        while True:
            try:
                self._start()
                return
            except OSError:  # the old socket is still closing
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def answer_all(self, code: int, text: str = "") -> None:
        """Answer every RCPT with `code` (e.g. 421, 451, 550): nothing is accepted."""
        with self._lock:
            self._answer = f"{code} {text or 'Try again later'}".strip()

    def reject_recipient(self, address: str, code: int = 550, text: str = "") -> None:
        """Refuse `address` at RCPT with `code`; other recipients are accepted."""
        with self._lock:
            self._rejected[address.lower()] = f"{code} {text or '5.1.1 No such user'}"

    def require_auth(self, user: str, password: str) -> None:
        """Accept only this login (535 for any other), and refuse MAIL before a login."""
        with self._lock:
            self._credentials = (user, password)

    def accept(self) -> None:
        """Back to normal: every recipient accepted, no login needed, listening."""
        with self._lock:
            self._answer = None
            self._rejected.clear()
            self._credentials = None
        self.resume()

    def stop(self) -> None:
        self._stop_controller()

    # The server side, called from aiosmtpd's thread.

    def _start(self) -> None:
        # A fresh controller each time: a stopped one has closed its event loop. asyncio binds
        # with SO_REUSEADDR, so the port is free again as soon as the old listener closed.
        controller = Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            server_hostname="sink.supportdesk.test",
            ident="supportdesk test sink",
            authenticator=self._authenticate,
            auth_require_tls=False,
            ready_timeout=5,
        )
        controller.start()
        self._controller = controller

    def _stop_controller(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            with contextlib.suppress(AssertionError):
                controller.stop()

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = (auth_data.login.decode(), auth_data.password.decode())
        with self._lock:
            self._logins.append(login)
            success = self._credentials in (None, login)
        return AuthResult(success=success, handled=False)

    def _mail_verdict(self, session) -> str | None:
        with self._lock:
            if self._credentials is not None and not session.authenticated:
                return "530 5.7.0 Authentication required"
        return None

    def _rcpt_verdict(self, address: str) -> str | None:
        with self._lock:
            return self._answer or self._rejected.get(address.lower())

    def _store(self, envelope, peer=("", 0)) -> None:
        raw = bytes(envelope.original_content or envelope.content)
        message = message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        delivery = Delivery(
            mail_from=str(envelope.mail_from),
            rcpt_tos=tuple(envelope.rcpt_tos),
            message=message,
            raw=raw,
            peer=tuple(peer[:2]),
        )
        with self._lock:
            self._deliveries.append(delivery)
            self._lock.notify_all()


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        if verdict := self.sink._mail_verdict(session):
            return verdict
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if verdict := self.sink._rcpt_verdict(address):
            return verdict
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.sink._store(envelope, session.peer)
        return "250 2.0.0 Message accepted for delivery"
