"""A real IMAP server for tests: Dovecot on 127.0.0.1 and a free port, in a directory of its own.

The poller is tested against the server it will meet in production, not a fake: UIDs,
UIDVALIDITY, keywords, MOVE and dropped connections all behave as Dovecot makes them.
Debian 12 ships Dovecot 2.3 and Debian 13 ships 2.4, whose configuration syntax differs, so
the configuration is written for the version `dovecot --version` reports. Dovecot will not
run mail processes as root: as root they run as nobody/nogroup on directories they own.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import pytest
from imap_tools import MailBoxUnencrypted

from tests.conftest import require
from tests.smtp_sink import HOST, free_port

USER = "helpdesk"


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if Path("/usr/sbin/dovecot").exists() else None
    )


def dovecot_version(binary: str) -> tuple[int, int]:
    output = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.match(r"(\d+)\.(\d+)", output.strip())
    if match is None:
        raise RuntimeError(f"Cannot read the Dovecot version from {output!r}")
    return int(match.group(1)), int(match.group(2))


class Account(NamedTuple):
    host: str
    port: int
    user: str
    password: str


class Dovecot:
    """One Dovecot instance; `stop()` and `start()` again keep its port, account and mail."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.version = dovecot_version(binary)
        self.directory = Path(tempfile.mkdtemp(prefix="supportdesk-dovecot-"))
        # mkdtemp makes it 0700; the unprivileged mail and auth processes must get in.
        self.directory.chmod(0o755)
        self.account = Account(HOST, free_port(), USER, secrets.token_hex(8))
        self._process: subprocess.Popen[bytes] | None = None
        self._write_config()

    @property
    def config(self) -> Path:
        return self.directory / "dovecot.conf"

    @property
    def log(self) -> Path:
        return self.directory / "dovecot.log"

    def _system_user(self) -> tuple[str, str]:
        if os.geteuid() == 0:
            return "nobody", "nogroup"
        return pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name

    def _write_config(self) -> None:
        user, group = self._system_user()
        mail = self.directory / "mail"
        mail.mkdir()
        uid, gid = pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
        if os.geteuid() == 0:
            os.chown(mail, uid, gid)
        # user:password:uid:gid:gecos:home:: - the userdb needs the uid and gid on the line.
        users = self.directory / "users"
        users.write_text(
            f"{self.account.user}:{{PLAIN}}{self.account.password}:{uid}:{gid}::{mail}::\n"
        )
        users.chmod(0o644)
        common = f"""\
base_dir = {self.directory}/run
state_dir = {self.directory}/state
instance_name = supportdesk-test-{self.account.port}
log_path = {self.log}
listen = {HOST}
protocols = imap
ssl = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
mail_uid = {user}
mail_gid = {group}
first_valid_uid = 0
first_valid_gid = 0
service imap-login {{
  inet_listener imap {{
    port = {self.account.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""
        if self.version >= (2, 4):
            text = f"""\
dovecot_config_version = 2.4.0
dovecot_storage_version = 2.4.0
{common}auth_allow_cleartext = yes
mail_driver = maildir
mail_path = {mail}/%{{user}}
passdb passwd-file {{
  passwd_file_path = {users}
}}
userdb passwd-file {{
  passwd_file_path = {users}
}}
"""
        else:
            text = f"""\
{common}disable_plaintext_auth = no
mail_location = maildir:{mail}/%u
passdb {{
  driver = passwd-file
  args = {users}
}}
userdb {{
  driver = passwd-file
  args = {users}
}}
"""
        self.config.write_text(text)

    def start(self, timeout: float = 10) -> None:
        if self._process is not None:
            return
        self._process = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.config)],
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                _, error = self._process.communicate()
                self._process = None
                raise RuntimeError(f"Dovecot did not start: {error.decode()}{self.log_text()}")
            if self._greets():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Dovecot did not answer in {timeout}s: {self.log_text()}")
            time.sleep(0.05)

    def _greets(self) -> bool:
        try:
            with socket.create_connection((HOST, self.account.port), timeout=1) as connection:
                return connection.recv(64).startswith(b"* OK")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the master and every process it started: their connections drop at once."""
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # Children run as another user in the same group; make sure none outlives the master.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        if process.stderr is not None:
            process.stderr.close()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def client(self, folder: str = "INBOX") -> MailBoxUnencrypted:
        """A logged-in client of the test account; use it as a context manager."""
        account = self.account
        return MailBoxUnencrypted(account.host, account.port, timeout=10).login(
            account.user, account.password, initial_folder=folder
        )

    def deliver(self, *messages: bytes, folder: str = "INBOX", flags: tuple[str, ...] = ()) -> None:
        with self.client(folder=folder) as mailbox:
            for raw in messages:
                mailbox.append(raw, folder, flag_set=flags or None)


# Fixtures: a test module imports these functions; the tests ask for `dovecot_server`
# (the Dovecot object) or `dovecot` (host, port, user, password).


@pytest.fixture(name="dovecot_server")
def dovecot_server_fixture():
    """A running Dovecot with one empty account, removed with its mail after the test."""
    binary = dovecot_binary()
    require(
        binary is not None,
        "Dovecot is not installed (on Debian: apt-get install dovecot-imapd)",
    )
    assert binary is not None
    server = Dovecot(binary)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture(name="dovecot")
def dovecot_fixture(dovecot_server):
    """(host, port, user, password) of the running test account."""
    return dovecot_server.account
