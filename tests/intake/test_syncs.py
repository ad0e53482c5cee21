"""fsync_all: files and directories synced side by side, and every failure told by path."""

from __future__ import annotations

import errno
import os
import platform
import sys
import threading
from pathlib import Path

import pytest

from supportdesk.intake import syncs

AIO_EXPECTED = sys.platform == "linux" and platform.machine() in syncs._SYSCALLS


@pytest.fixture
def aio():
    """The process's AIO context; on Linux (x86-64, arm64) it must exist in CI."""
    native = syncs._native()
    if native is None:
        if os.environ.get("CI") == "true" and AIO_EXPECTED:
            pytest.fail("Linux's AIO is unavailable: the store would sync one file at a time")
        pytest.skip("no AIO on this system: fsync_all syncs one file at a time")
    return native


@pytest.fixture
def submitted(aio, monkeypatch):
    """The descriptors of each AIO submission the kernel took."""
    batches: list[list[int]] = []
    real = aio.submit

    def submit(descriptors):
        taken = real(descriptors)
        batches.append(list(descriptors)[:taken])
        return taken

    monkeypatch.setattr(aio, "submit", submit)
    return batches


def fsync_all(paths: list[str]) -> dict[str, OSError]:
    """Every path synced, as a batch of the store syncs them; the errors by path."""
    with syncs.started(paths) as syncing:
        return syncing.wait()


def files(tmp_path: Path, count: int) -> list[str]:
    paths = []
    for number in range(count):
        path = tmp_path / f"mail-{number}.eml"
        path.write_bytes(b"Subject: %d\r\n\r\nbody\r\n" % number)
        paths.append(str(path))
    return paths


def test_files_and_their_directory_are_synced_in_one_submission(tmp_path, submitted):
    paths = [*files(tmp_path, 3), str(tmp_path)]
    assert fsync_all(paths) == {}
    assert len(submitted) == 1
    assert len(submitted[0]) == 4  # each path once, the directory too


def test_a_path_given_twice_is_synced_once(tmp_path, submitted):
    paths = files(tmp_path, 2)
    assert fsync_all([*paths, str(tmp_path), *paths, str(tmp_path)]) == {}
    assert [len(batch) for batch in submitted] == [3]


def test_a_path_that_cannot_be_opened_fails_alone(tmp_path, submitted):
    paths = files(tmp_path, 2)
    missing = str(tmp_path / "gone.eml")
    failed = fsync_all([paths[0], missing, paths[1]])
    assert list(failed) == [missing]
    assert failed[missing].errno == errno.ENOENT
    assert [len(batch) for batch in submitted] == [2]  # the others still synced together


def alone_fsync_error(path: str) -> int | None:
    """What a plain os.fsync says of `path`: its errno, or None when it syncs."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError as error:
        return error.errno
    finally:
        os.close(descriptor)
    return None


def test_a_file_the_kernel_will_not_sync_fails_alone_and_the_rest_are_synced(tmp_path, submitted):
    """A file without fsync (a /proc file: EINVAL, on Linux; the kernel stops taking the
    submission at it, and it and those after it are synced one by one) fails alone, as a
    plain fsync of it would. AIO stays in use."""
    unsyncable = "/proc/self/status"
    expected = alone_fsync_error(unsyncable)
    paths = files(tmp_path, 2)
    failed = fsync_all([paths[0], unsyncable, paths[1]])
    if expected is None:  # a kernel (a sandbox's) that syncs it: nothing to refuse
        assert failed == {}
    else:
        assert list(failed) == [unsyncable]
        assert failed[unsyncable].errno == expected
    assert syncs._native() is not None
    submitted.clear()
    assert fsync_all(paths) == {}
    assert [len(batch) for batch in submitted] == [2]


def test_more_paths_than_one_submission_takes_go_in_turns(tmp_path, submitted, monkeypatch):
    monkeypatch.setattr(syncs, "SUBMIT_MAX", 2)
    assert fsync_all(files(tmp_path, 5)) == {}
    assert [len(batch) for batch in submitted] == [2, 2, 1]


def test_the_syncs_go_on_while_the_caller_works_and_are_waited_for_once(tmp_path, aio):
    """started(): the batch inserts its rows while the kernel syncs; wait() before COMMIT."""
    reaped: list[int] = []
    real = aio.reap

    def reap(count):
        reaped.append(count)
        return real(count)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(aio, "reap", reap)
        with syncs.started([*files(tmp_path, 3), str(tmp_path)]) as syncing:
            assert reaped == []  # submitted, not waited for
            assert aio.lock.locked()  # the context is this batch's until it has waited
            assert syncing.wait() == {}
            assert reaped == [4]
            assert syncing.wait() == {}  # once: a second wait returns what the first did
        assert reaped == [4]
    assert not aio.lock.locked()


def test_a_block_that_raises_still_waits_for_its_syncs_and_lets_the_context_go(tmp_path, aio):
    with pytest.raises(RuntimeError), syncs.started(files(tmp_path, 2)):
        raise RuntimeError("the database refused the batch")
    assert not aio.lock.locked()
    assert fsync_all(files(tmp_path, 2)) == {}  # nothing left over in the context


def test_without_aio_every_path_is_synced_one_by_one(tmp_path, monkeypatch):
    monkeypatch.setattr(syncs, "_native", lambda: None)
    synced: list[int] = []
    real = os.fsync

    def fsync(descriptor):
        synced.append(descriptor)
        real(descriptor)

    monkeypatch.setattr(syncs.os, "fsync", fsync)
    missing = str(tmp_path / "gone.eml")
    failed = fsync_all([*files(tmp_path, 3), str(tmp_path), missing])
    assert list(failed) == [missing]
    assert len(synced) == 4


def test_a_kernel_that_refuses_aio_fsync_is_left_for_good(tmp_path, monkeypatch):
    """Before Linux 4.18 the first submission fails (EINVAL): every later call syncs one
    file at a time, and nothing is left unsynced on the way."""
    native = syncs._Aio.__new__(syncs._Aio)
    native.lock = threading.Lock()
    native.proven = False

    def refuse(_descriptors):
        raise OSError(errno.EINVAL, "Invalid argument")

    native.submit = refuse
    monkeypatch.setattr(syncs, "_aio", native)
    monkeypatch.setattr(syncs, "_aio_tried", True)
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(syncs.os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    assert fsync_all(files(tmp_path, 3)) == {}
    assert len(synced) == 3
    assert syncs._native() is None
