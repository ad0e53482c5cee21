"""A throwaway PostgreSQL server for the tests: `python -m tests.pg -- CMD ...`.

Runs CMD with DATABASE_URL pointing at a fresh server on a free loopback port, exits with
CMD's status, and always stops the server and removes its directory. From Python:

    with postgres_server() as url:
        ...

Debian's `postgresql` package provides the binaries (15 on Debian 12, 17 on Debian 13).
initdb and pg_ctl refuse to run as root, so as root they run as the `postgres` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

DATABASE = "supportdesk"
START_ATTEMPTS = 3


class PostgresMissing(RuntimeError):  # noqa: N818  (reads as the condition it reports)
    """No PostgreSQL server binaries on this machine."""


def find_bindir() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin that has initdb and pg_ctl."""
    candidates = [
        path
        for path in Path("/usr/lib/postgresql").glob("*/bin")
        if (path / "initdb").exists() and (path / "pg_ctl").exists()
    ]
    if not candidates:
        raise PostgresMissing(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
            "(on Debian: apt-get install postgresql)."
        )

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)

    return max(candidates, key=version)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_server_user() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _run(command: Sequence[str], *, what: str) -> None:
    result = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stdout}{result.stderr}")


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server, yield its DATABASE_URL, then stop it (fast) and delete its files."""
    bindir = find_bindir()
    root = Path(tempfile.mkdtemp(prefix="supportdesk-pg-"))
    data = root / "data"
    try:
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(root, owner.pw_uid, owner.pw_gid)
        _run(
            [*_as_server_user(), str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
            what="initdb",
        )  # fmt: skip
        port = _start(bindir, root, data)
        try:
            _run(
                [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                 DATABASE],
                what="createdb",
            )  # fmt: skip
            yield f"postgres://postgres@127.0.0.1:{port}/{DATABASE}"
        finally:
            subprocess.run(
                [*_as_server_user(), str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast",
                 "-w", "-t", "30", "stop"],
                capture_output=True, check=False,
            )  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _start(bindir: Path, root: Path, data: Path) -> int:
    """Start on a free port; another process may take the port first, so try a few."""
    # Durability is pointless for a server that is deleted afterwards; speed is not.
    options = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    error = ""
    for _attempt in range(START_ATTEMPTS):
        port = free_port()
        result = subprocess.run(
            [*_as_server_user(), str(bindir / "pg_ctl"), "-D", str(data), "-w", "-t", "30",
             "-l", str(root / "server.log"),
             "-o", f"-p {port} -k {root} -c listen_addresses=127.0.0.1 {options}", "start"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode == 0:
            return port
        log = root / "server.log"
        error = result.stdout + result.stderr + (log.read_text() if log.exists() else "")
    raise RuntimeError(f"PostgreSQL did not start:\n{error}")


def main(argv: Sequence[str]) -> int:
    arguments = list(argv)
    if arguments[:1] == ["--"]:
        arguments = arguments[1:]
    if not arguments:
        print("usage: python -m tests.pg -- COMMAND [ARGUMENTS...]", file=sys.stderr)
        return 2
    # SIGTERM unwinds like Ctrl-C, so the server is stopped and its directory removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        with postgres_server() as url:
            print(f"PostgreSQL is running for this command at {url}", flush=True)
            # Settings require a shared secret key with any database but SQLite.
            env = {"SUPPORTDESK_SECRET_KEY": secrets.token_urlsafe(32), **os.environ}
            env["DATABASE_URL"] = url
            return subprocess.run(arguments, env=env, check=False).returncode
    except KeyboardInterrupt:
        return 130
    except PostgresMissing as missing:
        if os.environ.get("CI", "").lower() == "true":
            print(f"tests.pg: {missing} CI=true: failing instead of skipping.", file=sys.stderr)
            return 1
        print(f"tests.pg: {missing} Skipping: {' '.join(arguments)}", file=sys.stderr)
        return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
