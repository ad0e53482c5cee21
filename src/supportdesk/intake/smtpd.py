"""The SMTP gateway: accepts mail for our mailboxes and answers 250 only once it is stored.

It does nothing else: parsing, threading and replies happen in the MAIL_RECEIVED handler run
that commits with the message's row, so a slow or failing processor never makes a sender
wait or lose a message. A 250 waits for the gateway's own spool (intake/spool.py), not for
the main database, whose one write lock on SQLite the workers hold while they process: a
mover thread (Mover) moves the spooled rows into it. Django's database calls are
synchronous, so they run beside the asyncio loop: the mailbox lookups in a thread pool, the
stores in one store thread (Storer), the moves in the mover's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import re
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from django.conf import settings
from django.db import close_old_connections, connections

from supportdesk.intake.mailboxes import active_mailboxes, our_local_part
from supportdesk.intake.models import Mailbox
from supportdesk.intake.spool import Spool, move_all
from supportdesk.intake.store import (
    BATCH_MAX,
    Incoming,
    Pending,
    StoreUnavailable,
    commit_spooled,
    keep,
)

logger = logging.getLogger(__name__)

MAX_RECIPIENTS = 100
# An admin's change to the mailboxes reaches a running gateway within this many seconds;
# reading them for every RCPT cost more than storing the message (bench/README.md).
MAILBOX_CACHE_SECONDS = 5.0
# The mailbox lookups (every MAILBOX_CACHE_SECONDS at most) run beside the event loop.
LOOKUP_THREADS = 1
# How long a thread may hold the GIL while another waits for it. A thread committing a batch
# (the store thread, the mover) holds a write lock while it writes the rows; at Python's default
# of 5 ms it lost the GIL to the SMTP thread and sat out whole intervals holding that lock:
# at 0.5 ms the gateway alone accepted 260-269 mails a second instead of 199-213
# (bench/README.md, "Mail in").
GIL_SWITCH_SECONDS = 0.0005
TEMPORARY_FAILURE = "451 4.3.0 Temporary failure, try again later"
DISK_FULL = "452 4.3.1 Insufficient system storage, try again later"
NO_SUCH_MAILBOX = "550 5.1.1 No such mailbox"
# `<dot-atom@dot-atom>`, then nothing or blanks and a parameter: nearly every MAIL and RCPT.
_PLAIN_PATH = re.compile(
    r"[ \t]*<((?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+\.)*[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
    r"@(?:[A-Za-z0-9-]+\.)*[A-Za-z0-9-]+)>(?:[ \t]+(?=[!-'*-~])|\Z)"
)

T = TypeVar("T")


_Job = tuple[Incoming, "asyncio.Future[int]", asyncio.AbstractEventLoop]
_Kept = tuple[Pending, "asyncio.Future[int]", asyncio.AbstractEventLoop]
_Settled = tuple["asyncio.Future[Any]", asyncio.AbstractEventLoop, object]


class Storer:
    """The gateway's one store thread: it takes the mails waiting, writes their files
    (store.keep), takes the mails that arrived meanwhile and writes theirs, and so on until
    none is waiting; then it fsyncs all the files together and commits all their rows
    together into the spool (store.commit_spooled), and wakes the mover.

    One thread, not a pool of them each waiting on a shared commit: the threads fought the
    SMTP thread for the GIL, and with their hand-overs (a pool's queue, a condition
    variable, a wake-up of the event loop per mail) the gateway used 4.8-5.1 ms of CPU a
    mail, against 3.5-3.9 with one thread. Files first, until no mail waits: a commit costs
    about the same for one mail as for four (the wait for the write lock, the COMMIT's fsync,
    the files' and the directory's, side by side), and when the thread took only the mails waiting at its start, half of
    the 4 senders' mails arrived while it wrote the others' files and waited for the next
    commit: batches of 2 (bench/README.md, "Mail in").
    """

    def __init__(self, mover: Mover, limit: int = BATCH_MAX) -> None:
        self.limit = limit
        self.mover = mover
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="smtpd-store", daemon=True)
        self._spool: Spool | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Store what is queued, then end the thread and close its database connection."""
        self._jobs.put(None)
        self._thread.join()

    def queued(self) -> int:
        """Mails queued that the store thread has not taken yet (it may still add them to the
        batch whose files it is writing)."""
        return self._jobs.qsize()

    async def store(self, incoming: Incoming) -> int:
        """The spool id, once its row committed; raises what refused it (StoreUnavailable)."""
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[int] = loop.create_future()
        self._jobs.put((incoming, stored, loop))
        return await stored

    def _run(self) -> None:
        try:
            while (first := self._jobs.get()) is not None:
                self._store([first])
        finally:
            if self._spool is not None:
                self._spool.close()
            connections.close_all()

    def _store(self, jobs: list[_Job]) -> None:
        kept: list[_Kept] = []
        while jobs:
            refused: list[_Settled] = []
            for incoming, stored, loop in jobs:
                try:
                    kept.append((keep(incoming), stored, loop))
                except Exception as error:  # noqa: BLE001  (this mail is refused, alone)
                    refused.append((stored, loop, error))
            _settle_all(refused)
            jobs = self._waiting(self.limit - len(kept))
        if kept:
            self._commit(kept)

    def _waiting(self, room: int) -> list[_Job]:
        """The mails waiting now, at most `room`; a stop request stays queued for _run."""
        jobs: list[_Job] = []
        while len(jobs) < room:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._jobs.put(None)  # stop after this batch
                break
            jobs.append(job)
        return jobs

    def _commit(self, batch: list[_Kept]) -> None:
        outcomes: list[int | StoreUnavailable] | list[Exception]
        try:
            if self._spool is None:
                self._spool = Spool()
            outcomes = commit_spooled([pending for pending, _, _ in batch], self._spool)
        except Exception as error:  # noqa: BLE001  (each sender is refused, as when alone)
            outcomes = [error] * len(batch)
        self.mover.poke()
        _settle_all(
            [
                (stored, loop, outcome)
                for (_, stored, loop), outcome in zip(batch, outcomes, strict=True)
            ]
        )


def _settle_all(settled: list[_Settled]) -> None:
    """Hand each outcome to the event loop of the sender waiting for it, once per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], object]]] = {}
    for stored, loop, outcome in settled:
        by_loop.setdefault(loop, []).append((stored, outcome))
    for loop, outcomes in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(_settle, outcomes)


def _settle(settled: list[tuple[asyncio.Future[Any], object]]) -> None:
    for stored, outcome in settled:
        if stored.done():  # the sender went away (its task was cancelled)
            continue
        if isinstance(outcome, BaseException):
            stored.set_exception(outcome)
        else:
            stored.set_result(outcome)


class Mover:
    """The gateway's thread that moves its spool's rows into the main database (spool.move),
    woken by each commit of the store thread and then left DELAY_SECONDS for more to come,
    so that it takes the main database's write lock once for many mails. A failure
    (the database locked or down) leaves the rows in the spool; it tries again after
    RETRY_SECONDS, and at the latest every IDLE_SECONDS."""

    DELAY_SECONDS = 0.05
    RETRY_SECONDS = 1.0
    IDLE_SECONDS = 5.0

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="smtpd-move", daemon=True)
        self._passes = 0
        self._passed = threading.Condition()

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        self._wake.set()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until a move that began after this call has ended (moved what was spooled,
        or failed); whether one did within `timeout`. For tests and for a caller that wants
        the rows in the main database now."""
        with self._passed:
            target = self._passes + 2  # the pass under way may have begun before the call
            self._wake.set()
            return self._passed.wait_for(lambda: self._passes >= target, timeout)

    def _pass_ended(self) -> None:
        with self._passed:
            self._passes += 1
            self._passed.notify_all()

    def stop(self) -> None:
        """Move what is spooled, then end the thread."""
        self._stopping.set()
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        spool: Spool | None = None
        try:
            while True:
                stopping = self._stopping.is_set()
                try:
                    if spool is None:
                        spool = Spool(durable=False)
                    close_old_connections()  # a connection the database dropped is replaced
                    move_all(spool)
                except Exception:
                    logger.exception("Moving spooled mail failed; it stays in the spool.")
                    self._pass_ended()
                    if stopping:
                        break
                    self._stopping.wait(self.RETRY_SECONDS)
                    continue
                self._pass_ended()
                if stopping:
                    break
                self._wake.wait(self.IDLE_SECONDS)
                self._wake.clear()
                self._stopping.wait(self.DELAY_SECONDS)
        finally:
            if spool is not None:
                spool.close()
            connections.close_all()


class GatewayHandler:
    """aiosmtpd's handler: RCPT checks the mailbox, DATA stores the message once.

    A message for several of our mailboxes is stored once, for the most urgent of them, with
    every one of our recipients in its envelope: one 250 then means one complete store (a
    half-stored copy set cannot happen), and the processor, which handles a Message-ID once,
    would have collapsed per-mailbox copies anyway.
    """

    def __init__(self, executor: ThreadPoolExecutor, storer: Storer) -> None:
        self.executor = executor
        self.storer = storer
        self._mailboxes: weakref.WeakKeyDictionary[Envelope, list[Mailbox]] = (
            weakref.WeakKeyDictionary()
        )
        self._directory: dict[str, Mailbox] = {}
        self._directory_until = 0.0

    async def find_mailbox(self, address: str) -> Mailbox | None:
        """The active mailbox for a recipient, as mailboxes.find_mailbox, from a short cache."""
        local_part = our_local_part(address)
        if local_part is None:
            return None
        if time.monotonic() >= self._directory_until:
            boxes = await self._in_thread(lambda: list(active_mailboxes()))
            directory: dict[str, Mailbox] = {}
            for box in boxes:  # ordered by id: the first of two that differ in case wins
                directory.setdefault(box.local_part.lower(), box)
            self._directory = directory
            self._directory_until = time.monotonic() + MAILBOX_CACHE_SECONDS
        return self._directory.get(local_part.lower())

    async def _in_thread(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def call() -> T:
            close_old_connections()  # a connection the database dropped is replaced, not reused
            try:
                return function(*args, **kwargs)
            finally:
                close_old_connections()

        return await asyncio.get_running_loop().run_in_executor(self.executor, call)

    async def handle_RCPT(  # noqa: N802  (aiosmtpd's hook name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        try:
            mailbox = await self.find_mailbox(address)
        except Exception:
            logger.exception("Mailbox lookup failed for a recipient.")
            return TEMPORARY_FAILURE
        if mailbox is None:
            return NO_SUCH_MAILBOX
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        self._mailboxes.setdefault(envelope, []).append(mailbox)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802  (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        mailboxes = self._mailboxes.pop(envelope, [])
        raw = envelope.original_content
        if not mailboxes or raw is None:
            return "503 5.5.1 No valid recipients"
        mailbox = min(mailboxes, key=lambda box: box.priority.rank)  # first of the most urgent
        incoming = Incoming(
            bytes(raw),
            source="smtp",
            mailbox=mailbox,
            envelope_from=str(envelope.mail_from or ""),
            envelope_to=list(envelope.rcpt_tos),
        )
        try:
            spool_id = await self.storer.store(incoming)
        except StoreUnavailable as error:
            logger.warning("Refused a message for %s: %s", mailbox.address, error.message)
            return DISK_FULL if error.disk_full else TEMPORARY_FAILURE
        except Exception:  # never a 250 without a stored row, whatever went wrong
            logger.exception("Refused a message for %s: storing it failed.", mailbox.address)
            return TEMPORARY_FAILURE
        logger.info(
            "Stored message %s (%d bytes) for %s.", spool_id, len(incoming.raw), mailbox.address
        )
        return f"250 2.0.0 Stored as {spool_id}"


class _GatewaySMTP(SMTP):
    """Lines up to the message size limit: RFC 5321 allows 1000 octets, but HTML mail from
    badly written generators breaks it, and a refused mail is lost to the customer."""

    def __init__(self, *args: Any, line_length_limit: int, **kwargs: Any) -> None:
        self.line_length_limit = line_length_limit
        super().__init__(*args, **kwargs)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's address parsing, without its cost for a plain `<local@domain>`.

        aiosmtpd 1.4 defines a typing.Protocol class inside `_getaddr`, a new class on every
        MAIL and RCPT, and parses the path with the email package's header parser: together
        a sixth of the gateway's CPU per mail (bench/README.md, "Mail in"). A dot-atom
        address reads the same either way (tests/intake/test_gateway.py compares them);
        anything else (quoted local parts, `<>`, a bare address) goes to aiosmtpd's code.
        What aiosmtpd's parse cannot read without raising is a malformed address.
        """
        plain = _PLAIN_PATH.match(arg)
        if plain is None:
            try:
                return super()._getaddr(arg)
            except Exception:  # noqa: BLE001  (the email parser's own bugs on hostile paths)
                # IndexError on a path ending in "@" (`x@`, `"a"@`), AttributeError on an
                # unclosed domain literal (`x@[`): a malformed address (553), not aiosmtpd's
                # 500 with the traceback's text.
                return None, None
        address = plain.group(1)
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, arg[plain.end() :]  # the blanks after the path are not the rest


class _GatewayController(Controller):
    def factory(self) -> SMTP:
        return _GatewaySMTP(
            self.handler, line_length_limit=max(1001, settings.MAIL_MAX_BYTES), **self.SMTP_kwargs
        )


class Gateway:
    """The gateway on a loopback or public address, in a thread of this process."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.executor = ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="smtpd-lookup")
        self.mover = Mover()
        self.storer = Storer(self.mover)
        self.controller = _GatewayController(
            GatewayHandler(self.executor, self.storer),
            hostname=host,
            port=port,
            server_hostname=settings.MAIL_DOMAIN,
            ident="supportdesk",
            data_size_limit=settings.MAIL_MAX_BYTES,
            enable_SMTPUTF8=True,
            decode_data=False,
        )

    def start(self) -> None:
        self.mover.start()
        self.storer.start()
        self.controller.start()

    def stop(self) -> None:
        """Stop listening, then let the stores in flight finish (their senders got no 250 and
        will send again; the processor handles a Message-ID once)."""
        self.controller.stop()
        self.storer.stop()
        self.mover.stop()
        _close_connections_of(self.executor)
        self.executor.shutdown(wait=True)


def _close_connections_of(executor: ThreadPoolExecutor) -> None:
    """Close the database connection each store thread holds. Connections belong to their
    thread, and a pool cannot address its threads: one task per thread, held at a barrier
    until all are running, makes every thread run exactly one. Without it the sessions
    outlive a gateway stopped inside a longer-lived process (PostgreSQL keeps counting
    them until that process exits)."""
    barrier = threading.Barrier(LOOKUP_THREADS)

    def close() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=5)
        connections.close_all()

    for done in [executor.submit(close) for _ in range(LOOKUP_THREADS)]:
        done.result()


def run(host: str, port: int) -> int:
    """Serve until SIGINT or SIGTERM; exit status 0."""
    stop = threading.Event()

    def request_stop(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    sys.setswitchinterval(GIL_SWITCH_SECONDS)  # this process is the gateway's alone
    gateway = Gateway(host, port)
    gateway.start()
    print(f"Mail gateway listening on {host}:{port} (Ctrl-C to stop).", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        gateway.stop()
    return 0
