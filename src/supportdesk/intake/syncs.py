"""fsync several files at once: the mail gateway's files and directories of one batch.

One fsync after another, each file of a batch waited for its own write and its own flush of
the disk's cache: three mails and their directory took 1.4-2.2 ms here, a third of a
batch's time. Linux's native AIO runs fsyncs side by side (IOCB_CMD_FSYNC, since Linux
4.18): submitted together, the flushes are shared, and the same four took 0.7-0.8 ms, with
no thread of ours waiting in each (a pool of threads doing it cost the gateway more CPU
than it saved: bench/README.md, "Mail in"). Python's os module has no AIO, and the library
that wraps libaio needs the C library installed too, so the four system calls are made
here through ctypes (docs/decisions.md, "Group commit in the mail gateway").

Anywhere AIO is missing (another system, another architecture, a kernel or a sandbox
that refuses it), the files are synced one after another as before: slower, as durable.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import platform
import sys
import threading
from collections.abc import Sequence

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
        if self._syscall(self._setup, SUBMIT_MAX, ctypes.byref(self._context)) != 0:
            raise _os_error("io_setup")

    def fsync(self, descriptors: Sequence[int]) -> list[int | None]:
        """fsync each descriptor side by side; each one's result: 0, -errno, or None when
        the kernel took fewer than all (the caller syncs those itself)."""
        count = len(descriptors)
        blocks = (_Iocb * count)()
        pointers = (ctypes.POINTER(_Iocb) * count)()
        for index, descriptor in enumerate(descriptors):
            blocks[index].opcode = _IOCB_CMD_FSYNC
            blocks[index].fildes = descriptor
            blocks[index].data = index
            pointers[index] = ctypes.pointer(blocks[index])
        submitted = self._syscall(self._submit, self._context, count, pointers)
        if submitted <= 0:
            raise _os_error("io_submit")
        self.proven = True
        results: list[int | None] = [None] * count
        events = (_IoEvent * submitted)()
        reaped = 0
        while reaped < submitted:
            got = self._syscall(self._getevents, self._context, 1, submitted - reaped, events, None)
            if got < 0:
                if ctypes.get_errno() == errno.EINTR:
                    continue
                raise _os_error("io_getevents")  # the submitted ones are never waited for
            for event in events[:got]:
                results[event.data] = event.res
            reaped += got
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


def fsync_all(paths: Sequence[str]) -> dict[str, OSError]:
    """fsync every path (files and directories), side by side where the system allows;
    return the error of each path that could not be synced, by path."""
    failed: dict[str, OSError] = {}
    opened: dict[str, int] = {}
    try:
        for path in dict.fromkeys(paths):
            try:
                opened[path] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as error:
                failed[path] = error
        left, failed_native = _fsync_native(opened)
        failed.update(failed_native)
        for path in left:
            try:
                os.fsync(opened[path])
            except OSError as error:
                failed[path] = error
    finally:
        for descriptor in opened.values():
            os.close(descriptor)
    return failed


def _fsync_native(opened: dict[str, int]) -> tuple[list[str], dict[str, OSError]]:
    """Sync what AIO can; return the paths left to sync one by one (all of them without
    AIO, or for a single path) and the errors of those AIO could not sync."""
    aio = _native() if len(opened) > 1 else None
    if aio is None:
        return list(opened), {}
    left: list[str] = []
    failed: dict[str, OSError] = {}
    paths = list(opened)
    with aio.lock:
        for start in range(0, len(paths), SUBMIT_MAX):
            chunk = paths[start : start + SUBMIT_MAX]
            try:
                results = aio.fsync([opened[path] for path in chunk])
            except OSError as error:
                if not aio.proven:  # a kernel before 4.18: EINVAL at the first submission
                    _give_up_native(error)
                left.extend(chunk)  # the first would not go (a file without fsync): each alone
                continue
            for path, result in zip(chunk, results, strict=True):
                if result is None:
                    left.append(path)
                elif result < 0:
                    failed[path] = OSError(-result, os.strerror(-result), path)
    return left, failed
