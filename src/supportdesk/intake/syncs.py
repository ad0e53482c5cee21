"""fsync several files at once: the mail gateway's files and directories of one batch.

One fsync after another, each file of a batch waited for its own write and its own flush of
the disk's cache: three mails and their directory took 1.4-2.2 ms here, a third of a
batch's time. Linux's native AIO runs fsyncs side by side (IOCB_CMD_FSYNC, since Linux
4.18): submitted together, the flushes are shared, and the same four took 0.7-0.8 ms, with
no thread of ours waiting in each (a pool of threads doing it cost the gateway more CPU
than it saved: bench/README.md, "Mail in"). Python's os module has no AIO, and the library
that wraps libaio needs the C library installed too, so the four system calls are made
here through ctypes (docs/decisions.md, "Group commit in the mail gateway").

Submitted, the fsyncs go on without us: `started()` lets the batch wait for the database's
write lock and insert its rows meanwhile, and wait for them only before its COMMIT.

Anywhere AIO is missing (another system, another architecture, a kernel or a sandbox
that refuses it), the files are synced one after another as before: slower, as durable.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import platform
import sys
import threading
from collections.abc import Iterator, Sequence

logger = logging.getLogger(__name__)

# io_setup, io_destroy, io_getevents, io_submit: x86-64's numbers, and the generic table's.
_SYSCALLS = {"x86_64": (206, 207, 208, 209), "aarch64": (0, 1, 4, 2)}
_IOCB_CMD_FSYNC = 2
# Files synced in one submission at most (a batch holds up to 64 mails and their
# directories); more are submitted in turns.
SUBMIT_MAX = 128


class _Iocb(ctypes.Structure):
    """struct iocb (linux/aio_abi.h), little-endian: aio_key before aio_rw_flags."""

    _fields_ = [
        ("data", ctypes.c_uint64),
        ("key", ctypes.c_uint32),
        ("rw_flags", ctypes.c_int32),
        ("opcode", ctypes.c_uint16),
        ("reqprio", ctypes.c_int16),
        ("fildes", ctypes.c_uint32),
        ("buf", ctypes.c_uint64),
        ("nbytes", ctypes.c_uint64),
        ("offset", ctypes.c_int64),
        ("reserved2", ctypes.c_uint64),
        ("flags", ctypes.c_uint32),
        ("resfd", ctypes.c_uint32),
    ]


class _IoEvent(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_uint64),
        ("obj", ctypes.c_uint64),
        ("res", ctypes.c_int64),
        ("res2", ctypes.c_int64),
    ]


class _Aio:
    """One AIO context for the process, used by one thread at a time."""

    def __init__(self, libc: ctypes.CDLL, numbers: tuple[int, int, int, int]) -> None:
        self._syscall = libc.syscall
        self._syscall.restype = ctypes.c_long
        self._setup, _, self._getevents, self._submit = numbers
        self._context = ctypes.c_ulong(0)
        self.lock = threading.Lock()
        self.proven = False  # a submission has succeeded: the kernel does AIO fsync
        if self._call(self._setup, ctypes.c_uint(SUBMIT_MAX), ctypes.byref(self._context)) != 0:
            raise _os_error("io_setup")

    def _call(self, number: int, *arguments: object) -> int:
        """syscall(2), its arguments typed as the kernel reads them: a bare Python int would
        go as a C int, whose upper half in a 64-bit register is left undefined."""
        return int(self._syscall(ctypes.c_long(number), *arguments))

    def submit(self, descriptors: Sequence[int]) -> int:
        """Start an fsync of each descriptor, in order; how many the kernel took (it stops
        at one it refuses: a file without fsync of its own). Raises OSError when it took
        none. Each one taken must be reaped (reap) before the next submission."""
        count = len(descriptors)
        blocks = (_Iocb * count)()
        pointers = (ctypes.POINTER(_Iocb) * count)()
        for index, descriptor in enumerate(descriptors):
            blocks[index].opcode = _IOCB_CMD_FSYNC
            blocks[index].fildes = descriptor
            blocks[index].data = index
            pointers[index] = ctypes.pointer(blocks[index])
        taken = self._call(self._submit, self._context, ctypes.c_long(count), pointers)
        if taken <= 0:
            raise _os_error("io_submit")
        self.proven = True
        return taken

    def reap(self, count: int) -> dict[int, int]:
        """Wait for `count` submitted fsyncs; each one's result (0 or -errno) by its index
        in the submission."""
        results: dict[int, int] = {}
        events = (_IoEvent * count)()
        while len(results) < count:
            left = count - len(results)
            limits = ctypes.c_long(1), ctypes.c_long(left)
            got = self._call(self._getevents, self._context, *limits, events, None)
            if got < 0:
                if ctypes.get_errno() == errno.EINTR:
                    continue
                raise _os_error("io_getevents")
            for event in events[:got]:
                results[int(event.data)] = int(event.res)
        return results


def _os_error(call: str) -> OSError:
    number = ctypes.get_errno()
    return OSError(number, f"{call}: {os.strerror(number)}")


_aio: _Aio | None = None
_aio_tried = False
_aio_lock = threading.Lock()


def _native() -> _Aio | None:
    """The process's AIO context, made on first use; None where there is none."""
    global _aio, _aio_tried
    with _aio_lock:
        if not _aio_tried:
            _aio_tried = True
            numbers = _SYSCALLS.get(platform.machine())
            if sys.platform == "linux" and numbers is not None:
                try:
                    _aio = _Aio(ctypes.CDLL(None, use_errno=True), numbers)
                except OSError as error:
                    logger.info("fsync one file at a time: no AIO here (%s).", error)
        return _aio


def _give_up_native(error: OSError) -> None:
    global _aio
    logger.info("fsync one file at a time: AIO refused fsync (%s).", error)
    with _aio_lock:
        _aio = None


@contextlib.contextmanager
def started(paths: Sequence[str]) -> Iterator[Syncing]:
    """The fsyncs of `paths` under way while the block runs (a batch's inserts wait for the
    database's write lock meanwhile); `wait()` inside it returns their errors by path.
    Without AIO the paths are synced here, one by one, before the block."""
    syncing = Syncing(paths)
    try:
        yield syncing
    finally:
        syncing.wait()


class Syncing:
    """fsyncs started (submitted through AIO, or done already without it) until wait()."""

    def __init__(self, paths: Sequence[str]) -> None:
        self._failed: dict[str, OSError] = {}
        self._opened: dict[str, int] = {}
        self._submitted: list[str] = []  # the first of _opened, in AIO's hands
        self._synced: set[str] = set()
        self._aio: _Aio | None = None
        self._done = False
        for path in dict.fromkeys(paths):
            try:
                self._opened[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as error:
                self._failed[path] = error
        try:
            aio = _native() if len(self._opened) > 1 else None
            if aio is not None:
                aio.lock.acquire()  # until wait(): the process's one context, one batch at a time
                self._aio = aio
                self._submit(list(self._opened)[:SUBMIT_MAX])
            if not self._submitted:
                self._release()
                self._sync_alone(list(self._opened))
        except BaseException:
            self._close()
            raise

    def wait(self) -> dict[str, OSError]:
        """Wait for every fsync; the error of each path that failed. Closes the files."""
        if self._done:
            return self._failed
        try:
            self._reap()
            while (left := self._unsettled()) and self._aio is not None:
                self._submit(left[:SUBMIT_MAX])  # more than one submission takes
                if not self._submitted:
                    break
                self._reap()
            self._sync_alone(self._unsettled())
        finally:
            self._close()
        return self._failed

    def _close(self) -> None:
        self._done = True
        self._release()
        for descriptor in self._opened.values():
            os.close(descriptor)

    def _submit(self, paths: list[str]) -> None:
        if self._aio is None:
            return
        try:
            taken = self._aio.submit([self._opened[path] for path in paths])
        except OSError as error:
            if not self._aio.proven:  # a kernel before 4.18: EINVAL at the first submission
                _give_up_native(error)
            self._release()  # the rest one by one
            return
        self._submitted = paths[:taken]

    def _reap(self) -> None:
        if not self._submitted or self._aio is None:
            return
        submitted, self._submitted = self._submitted, []
        try:
            results = self._aio.reap(len(submitted))
        except OSError as error:  # its events are left in the context: never use it again
            _give_up_native(error)
            raise
        for index, result in results.items():
            path = submitted[index]
            self._synced.add(path)
            if result < 0:
                self._failed[path] = OSError(-result, os.strerror(-result), path)

    def _unsettled(self) -> list[str]:
        return [path for path in self._opened if path not in self._synced]

    def _release(self) -> None:
        """Let the process's AIO context go to the next batch: nothing of ours is in it."""
        if self._aio is not None:
            self._aio.lock.release()
            self._aio = None

    def _sync_alone(self, paths: list[str]) -> None:
        for path in paths:
            try:
                os.fsync(self._opened[path])
            except OSError as error:
                self._failed[path] = error
            self._synced.add(path)  # settled, failed or not
