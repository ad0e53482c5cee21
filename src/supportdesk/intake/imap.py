"""IMAP polling: every message in a mailbox's folder stored raw exactly once, then marked.

Order matters for "never lose, never double": a message is stored first and marked on the
server after, so a crash or a dropped connection between the two leaves a message that is
stored but unmarked. The next poll recognises it by its UID (kept as
"<UIDVALIDITY>:<UID>", so a folder whose UIDs were reset is never confused with its past)
and only marks it. Messages are selected by UID and by our own keyword, never by the unread
flag, which people reading the mailbox change.
"""

from __future__ import annotations

import imaplib
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from django.conf import settings
from django.db import close_old_connections
from imap_tools import BaseMailBox, MailBox, MailBoxUnencrypted, MailMessage
from imap_tools.errors import ImapToolsError, MailboxLoginError

from supportdesk.intake import store
from supportdesk.intake.models import InboundMessage, Mailbox

logger = logging.getLogger(__name__)

# Set with \Seen on a processed message when the mailbox has no processed folder. A keyword
# of our own, unlike \Seen, is not undone by someone reading or un-reading the mail.
PROCESSED_KEYWORD = "$supportdesk"
SOURCE = "imap"
TIMEOUT_SECONDS = 60

# Errors that mean "this connection or server is unusable now": stop this mailbox's batch.
ConnectionErrors = (imaplib.IMAP4.error, ImapToolsError, OSError, EOFError)


class BatchStopped(Exception):  # noqa: N818  (reads as what happened)
    """The mailbox's batch cannot go on this poll; the next poll picks up where it stopped."""


class _RawMessage(MailMessage):
    """imap-tools keeps only the parsed message; the store needs the bytes as received."""

    def __init__(self, fetch_data: list[object]) -> None:
        super().__init__(fetch_data)
        self.raw: bytes = next(
            (bytes(item[1]) for item in fetch_data if isinstance(item, tuple)), b""
        )


def fetch(*, once: bool) -> int:
    """Poll every active mailbox that has an IMAP host; return how many messages were stored.

    With once=False, polls every FETCHMAIL_SECONDS until SIGINT or SIGTERM, then returns.
    One mailbox's failure (wrong password, server down, store unavailable) is logged and
    never stops the others.
    """
    if once:
        return poll_all()
    stopping = threading.Event()
    restore = _stop_on_signals(stopping)
    total = 0
    try:
        while not stopping.is_set():
            close_old_connections()
            try:
                total += poll_all(stopping)
            except Exception:
                logger.exception("IMAP poll failed; trying again at the next poll.")
            stopping.wait(settings.FETCHMAIL_SECONDS)
    finally:
        restore()
    return total


def poll_all(stopping: threading.Event | None = None) -> int:
    stored = 0
    for mailbox in Mailbox.objects.filter(is_active=True).exclude(imap_host=""):
        if stopping is not None and stopping.is_set():
            break
        stored += poll_mailbox(mailbox, stopping)
    return stored


def poll_mailbox(mailbox: Mailbox, stopping: threading.Event | None = None) -> int:
    """Store what is new in one mailbox's folder; return how many messages were stored."""
    password = imap_password(mailbox)
    if password is None:
        return 0
    batch = _Batch(mailbox, stopping)
    try:
        with _connect(mailbox, password) as client:
            batch.run(client)
    except BatchStopped as stop:
        logger.warning("Mailbox %s: %s; the next poll continues.", mailbox.address, stop)
    except MailboxLoginError:  # needs an admin, unlike an outage that passes by itself
        logger.error(
            "Mailbox %s: IMAP login as %s at %s:%s refused; check its password.",
            mailbox.address,
            mailbox.imap_user,
            mailbox.imap_host,
            mailbox.imap_port,
        )
    except ConnectionErrors as error:
        logger.warning(
            "Mailbox %s: IMAP %s:%s failed after %d stored: %s; the next poll continues.",
            mailbox.address,
            mailbox.imap_host,
            mailbox.imap_port,
            batch.stored,
            error or type(error).__name__,
        )
    except Exception:  # a bug must not stop the other mailboxes
        logger.exception(
            "Mailbox %s: IMAP poll failed after %d stored.", mailbox.address, batch.stored
        )
    return batch.stored


def imap_password(mailbox: Mailbox) -> str | None:
    """The password from the variable or the file the mailbox names (never the database).

    None, with an error logged that names the mailbox and where the password was looked for,
    when it is not there. The variable's name is configuration data, so it is read here
    rather than in settings.py.
    """
    if mailbox.imap_password_env:
        value = os.environ.get(mailbox.imap_password_env)
        if value:
            return value
        logger.error(
            "Mailbox %s: IMAP password variable %s is not set; mailbox skipped.",
            mailbox.address,
            mailbox.imap_password_env,
        )
        return None
    if mailbox.imap_password_file:
        try:
            return Path(mailbox.imap_password_file).read_text().rstrip("\r\n")
        except OSError as error:
            logger.error(
                "Mailbox %s: IMAP password file %s cannot be read (%s); mailbox skipped.",
                mailbox.address,
                mailbox.imap_password_file,
                error.strerror or error,
            )
            return None
    logger.error(
        "Mailbox %s: no IMAP password variable or file configured; mailbox skipped.",
        mailbox.address,
    )
    return None


def _connect(mailbox: Mailbox, password: str) -> BaseMailBox:
    client: BaseMailBox
    if mailbox.imap_tls:
        client = MailBox(mailbox.imap_host, mailbox.imap_port, timeout=TIMEOUT_SECONDS)
    else:
        client = MailBoxUnencrypted(mailbox.imap_host, mailbox.imap_port, timeout=TIMEOUT_SECONDS)
    client.email_message_class = _RawMessage
    client.login(mailbox.imap_user, password, initial_folder=None)
    # imaplib keeps the capabilities announced before login; servers announce more after
    # it (Dovecot: MOVE, UIDPLUS), and the move below depends on them.
    status, data = client.client.capability()
    if status == "OK" and data and isinstance(data[0], bytes):
        client.client.capabilities = tuple(data[0].decode().upper().split())
    return client


class _Batch:
    """One poll of one mailbox's folder; `stored` counts what it stored, even if it fails."""

    def __init__(self, mailbox: Mailbox, stopping: threading.Event | None) -> None:
        self.mailbox = mailbox
        self.stopping = stopping
        self.stored = 0

    def run(self, client: BaseMailBox) -> None:
        mailbox = self.mailbox
        client.folder.set(mailbox.imap_folder)
        uidvalidity = _uidvalidity(client, mailbox.imap_folder)
        folder = mailbox.imap_processed_folder
        if folder and not client.folder.exists(folder):
            client.folder.create(folder)
        # Unmarked and not deleted; in move mode everything left in the folder is unprocessed.
        uids = client.uids(f"NOT KEYWORD {PROCESSED_KEYWORD} NOT DELETED")
        keys = {uid: f"{uidvalidity}:{uid}" for uid in uids}
        already = set(
            InboundMessage.objects.filter(mailbox=mailbox, imap_uid__in=keys.values()).values_list(
                "imap_uid", flat=True
            )
        )
        for uid in uids:
            if keys[uid] in already:  # stored by a poll that could not mark it
                _mark_processed(client, mailbox, uid)
        new = [uid for uid in uids if keys[uid] not in already]
        if not new:  # imap-tools fetches the whole folder for an empty uid_list
            return
        # One FETCH per message: a dropped connection costs at most the message in flight.
        for message in client.fetch(uid_list=new, mark_seen=False, bulk=False):
            if self.stopping is not None and self.stopping.is_set():
                return
            if not isinstance(message, _RawMessage) or message.uid not in keys:
                continue
            try:
                store.store_message(
                    message.raw, source=SOURCE, mailbox=mailbox, imap_uid=keys[message.uid]
                )
            except store.StoreUnavailable as error:
                raise BatchStopped(f"cannot store messages ({error})") from error
            self.stored += 1
            _mark_processed(client, mailbox, message.uid)


def _uidvalidity(client: BaseMailBox, folder: str) -> str:
    """UIDVALIDITY of the folder just selected (from SELECT's answer, else asked for)."""
    _, data = client.client.response("UIDVALIDITY")
    if data and isinstance(data[0], bytes):
        return data[0].decode()
    return str(client.folder.status(folder, ["UIDVALIDITY"])["UIDVALIDITY"])


def _mark_processed(client: BaseMailBox, mailbox: Mailbox, uid: str) -> None:
    """Move the message to the processed folder, or flag it \\Seen and our keyword.

    Not imap-tools' flag() or delete(), which expunge the whole folder: that would purge
    messages someone else marked deleted in a mailbox that is not only ours.
    """
    imap = client.client
    folder = mailbox.imap_processed_folder
    if folder and "MOVE" in imap.capabilities:
        client.move(uid, folder)
        return
    if folder:  # no MOVE: copy, then delete only this message
        client.copy(uid, folder)
        _store_flags(client, uid, "(\\Deleted)")
        if "UIDPLUS" in imap.capabilities:
            status, data = imap.uid("EXPUNGE", uid)
            if status != "OK":
                raise BatchStopped(f"cannot expunge UID {uid} ({data!r})")
        return
    _store_flags(client, uid, f"(\\Seen {PROCESSED_KEYWORD})")


def _store_flags(client: BaseMailBox, uid: str, flags: str) -> None:
    status, data = client.client.uid("STORE", uid, "+FLAGS", flags)
    if status != "OK":
        raise BatchStopped(f"cannot flag UID {uid} ({data!r})")


def _stop_on_signals(stopping: threading.Event) -> Callable[[], None]:
    """Make SIGINT and SIGTERM end the loop after the message in hand; return the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # only the main thread may set handlers; the caller stops us
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.getsignal(number) for number in signals}

    def stop(number: int, frame: FrameType | None) -> None:
        logger.info("Signal %d: stopping fetchmail.", number)
        stopping.set()

    for number in signals:
        signal.signal(number, stop)

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)

    return restore
