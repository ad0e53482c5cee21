"""The `supportdesk` command, run as a user runs it: a separate process on a SQLite data directory."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.auth.hashers import check_password

from supportdesk.demo import demo_logins

DATABASE = "supportdesk.sqlite3"
AGENTS = ("bot@example.com", "other@example.com")  # in every copy of the migrated database


def cli_environment(home: Path, **extra: str) -> dict[str, str]:
    """The caller's environment minus anything that configures supportdesk, plus `extra`."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("SUPPORTDESK_")
        and key not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(SUPPORTDESK_HOME=str(home), DJANGO_SETTINGS_MODULE="supportdesk.settings", **extra)
    return env


def supportdesk(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "supportdesk", *args],
        env=cli_environment(home, **extra), cwd=home.parent, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip


def rows(home: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(home / DATABASE) as connection:
        return connection.execute(sql, params).fetchall()


def password_hash(home: Path, email: str) -> str:
    [(encoded,)] = rows(home, "SELECT password FROM accounts_user WHERE email = ?", email)
    return str(encoded)


@pytest.fixture(scope="module")
def migrated(tmp_path_factory):
    """One migrated data directory, copied for each test: migrating once keeps the file fast."""
    home = tmp_path_factory.mktemp("template") / "home"
    result = supportdesk(home, "migrate")
    assert result.returncode == 0, result.stderr
    for email in AGENTS:
        created = supportdesk(home, "createuser", "--email", email, "--role", "agent")
        assert created.returncode == 0, created.stderr
    return home, result


@pytest.fixture
def home(migrated, tmp_path):
    template, _result = migrated
    copy = tmp_path / "home"
    shutil.copytree(template, copy)
    return copy


def test_migrate_creates_the_database_and_reports_progress(migrated):
    home, result = migrated
    assert "Applying database migrations" in result.stdout
    assert "up to date" in result.stdout
    tables = {name for (name,) in rows(home, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "accounts_user",
        "tickets_ticket",
        "events_event",
        "django_tasks_database_dbtaskresult",
    } <= tables


def test_migrate_twice_changes_nothing(home):
    before = rows(home, "SELECT app, name FROM django_migrations ORDER BY id")
    result = supportdesk(home, "migrate")
    assert result.returncode == 0, result.stderr
    assert rows(home, "SELECT app, name FROM django_migrations ORDER BY id") == before


@pytest.mark.parametrize(
    ("role", "extra"),
    [("customer", ["--org", "Northwind Hosting"]), ("agent", []), ("admin", [])],
)
def test_createuser_prints_a_generated_password_that_logs_in(home, role, extra):
    email = f"{role}@example.com"
    result = supportdesk(home, "createuser", "--email", email, "--role", role, *extra)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("Password: ")
    password = last.removeprefix("Password: ")
    assert len(password) >= 12
    assert check_password(password, password_hash(home, email))
    assert not check_password(password + "x", password_hash(home, email))
    assert rows(home, "SELECT role FROM accounts_user WHERE email = ?", email) == [(role,)]


def test_createuser_uses_the_given_password_and_does_not_print_it(home):
    result = supportdesk(
        home, "createuser", "--email", "ops@example.com", "--role", "agent",
        "--password", "a long enough passphrase", "--name", "Ops Person",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "a long enough passphrase" not in result.stdout
    assert check_password("a long enough passphrase", password_hash(home, "ops@example.com"))
    assert rows(home, "SELECT name FROM accounts_user WHERE email = 'ops@example.com'") == [
        ("Ops Person",)
    ]


def test_createuser_refuses_a_weak_password(home):
    result = supportdesk(
        home, "createuser", "--email", "weak@example.com", "--role", "agent", "--password", "123"
    )
    assert result.returncode == 1
    assert "too short" in result.stderr
    assert rows(home, "SELECT COUNT(*) FROM accounts_user WHERE email LIKE 'weak%'") == [(0,)]


def test_a_customer_needs_an_organization(home):
    result = supportdesk(home, "createuser", "--email", "nora@example.com", "--role", "customer")
    assert result.returncode == 1
    assert "--org is required" in result.stderr
    assert rows(home, "SELECT COUNT(*) FROM accounts_user WHERE email LIKE 'nora%'") == [(0,)]


def test_org_is_created_when_missing_and_reused_in_any_case(home):
    first = supportdesk(home, "createuser", "--email", "a@example.com", "--role", "customer",
                        "--org", "Blue Harbor Media")  # fmt: skip
    second = supportdesk(home, "createuser", "--email", "b@example.com", "--role", "customer",
                         "--org", "blue harbor media")  # fmt: skip
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert rows(home, "SELECT name FROM accounts_organization") == [("Blue Harbor Media",)]
    assert rows(
        home, "SELECT COUNT(DISTINCT organization_id) FROM accounts_user WHERE role = 'customer'"
    ) == [(1,)]


def test_a_duplicate_email_in_another_case_fails_and_creates_nothing(home):
    assert (
        supportdesk(home, "createuser", "--email", "Ada@Example.com", "--role", "agent").returncode
        == 0
    )
    result = supportdesk(home, "createuser", "--email", "ada@EXAMPLE.com", "--role", "customer",
                         "--org", "New Org")  # fmt: skip
    assert result.returncode == 1
    assert "exists already" in result.stderr
    assert rows(home, "SELECT COUNT(*) FROM accounts_user WHERE email LIKE 'ada@%'") == [(1,)]
    assert rows(home, "SELECT COUNT(*) FROM accounts_organization") == [(0,)]  # rolled back


def test_token_create_prints_the_token_last_and_stores_only_its_digest(home):
    result = supportdesk(home, "token", "create", "--email", "BOT@example.com")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("sd_")
    stored = rows(home, "SELECT digest, read_only, expires_at, prefix FROM accounts_apitoken")
    assert stored == [(hashlib.sha256(token.encode()).hexdigest(), 0, None, token[:10])]
    database = (home / DATABASE).read_bytes()
    assert token.encode() not in database


def test_token_create_read_only_with_expiry(home):
    result = supportdesk(home, "token", "create", "--email", "bot@example.com", "--read-only",
                         "--expires", "30")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "read-only" in result.stdout
    [(read_only, expires_at)] = rows(home, "SELECT read_only, expires_at FROM accounts_apitoken")
    assert read_only == 1
    expires = datetime.fromisoformat(str(expires_at)).replace(tzinfo=UTC)
    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=5)


def test_token_create_for_an_unknown_email_fails_clearly(home):
    result = supportdesk(home, "token", "create", "--email", "nobody@example.com")
    assert result.returncode == 1
    assert "No user with the email nobody@example.com" in result.stderr
    assert result.stdout.strip() == ""
    assert rows(home, "SELECT COUNT(*) FROM accounts_apitoken") == [(0,)]


def test_token_list_and_revoke(home):
    first = supportdesk(home, "token", "create", "--email", "bot@example.com").stdout.split()[-1]
    second = supportdesk(home, "token", "create", "--email", "other@example.com").stdout.split()[-1]

    revoked = supportdesk(home, "token", "revoke", first[:10])
    assert revoked.returncode == 0, revoked.stderr
    states = dict(rows(home, "SELECT prefix, revoked_at IS NOT NULL FROM accounts_apitoken"))
    assert states == {first[:10]: 1, second[:10]: 0}

    listing = supportdesk(home, "token", "list").stdout.splitlines()
    line_of = {prefix: next(line for line in listing if prefix in line) for prefix in states}
    assert "revoked" in line_of[first[:10]]
    assert "active" in line_of[second[:10]]
    assert first not in "\n".join(listing)  # never the secret
    only_bot = supportdesk(home, "token", "list", "--email", "bot@example.com").stdout
    assert first[:10] in only_bot
    assert second[:10] not in only_bot

    [(second_id,)] = rows(home, "SELECT id FROM accounts_apitoken WHERE prefix = ?", second[:10])
    assert supportdesk(home, "token", "revoke", str(second_id)).returncode == 0
    assert rows(home, "SELECT COUNT(*) FROM accounts_apitoken WHERE revoked_at IS NULL") == [(0,)]

    unknown = supportdesk(home, "token", "revoke", "sd_nothere")
    assert unknown.returncode == 1
    assert "No API token matches" in unknown.stderr


def test_manage_passes_the_rest_to_django(home):
    result = supportdesk(home, "manage", "showmigrations", "accounts")
    assert result.returncode == 0, result.stderr
    assert "[X] 0001_initial" in result.stdout


@pytest.mark.parametrize("command", ["web", "worker", "serve"])
def test_servers_refuse_to_start_on_postgres_without_a_secret_key(tmp_path, command):
    # Port 9 (discard) is never a PostgreSQL server: the check must come before any connection.
    result = supportdesk(tmp_path / "home", command,
                         DATABASE_URL="postgres://supportdesk@127.0.0.1:9/supportdesk")  # fmt: skip
    assert result.returncode == 1
    assert "SUPPORTDESK_SECRET_KEY" in result.stderr
    assert not (tmp_path / "home" / "secret_key").exists()


# ---------------------------------------------------------------- serve


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def descendants(pid: int) -> set[int]:
    """Every process below pid, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found: set[int] = set()
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.add(child)
            pending.append(child)
    return found


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state != "Z"


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310  (loopback only)
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_serve_demo_runs_the_site_and_stops_everything_on_ctrl_c(tmp_path):
    home = tmp_path / "home"
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "supportdesk", "serve", "--demo", "--port", str(port),
         "--workers", "1", "--threads", "2"],
        env=cli_environment(home, SUPPORTDESK_SMTPD_PORT=str(free_port())), cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(serve.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        last_login = demo_logins()[-1][0]
        while not any(last_login in line for line in output):  # printed after "running"
            assert serve.poll() is None, "".join(output)
            assert time.monotonic() < deadline, "".join(output)
            time.sleep(0.1)

        base = f"http://127.0.0.1:{port}"
        health = get(f"{base}/healthz")
        assert health == 200 or (health == 404 and get(f"{base}/login/") == 200)
        assert get(f"{base}/static/admin/css/base.css") == 200  # collected, served by whitenoise
        text = "".join(output)
        assert f"running on http://127.0.0.1:{port}/" in text
        for email, password, _role in demo_logins():
            assert email in text
            assert password in text
        admin, admin_password, _ = demo_logins()[0]
        assert check_password(admin_password, password_hash(home, admin))
        assert rows(home, "SELECT COUNT(*) FROM tickets_ticket")[0][0] >= 24

        children = descendants(serve.pid)
        # gunicorn, its worker, two background workers (the default), the mail gateway
        assert len(children) >= 5
        started = time.monotonic()
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=10) == 0, "".join(output)
        assert time.monotonic() - started < 10
        deadline = time.monotonic() + 2
        while any(is_running(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in children if is_running(pid)]
    finally:  # a failed run must not leave servers behind
        for pid in descendants(serve.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if serve.poll() is None:
            serve.kill()
            serve.wait()


def _autogroup_niceness(pid: int | str) -> int | None:
    """The niceness of the process's autogroup (its session's share of the CPU against
    other sessions), or None where the kernel has no autogroup scheduling or shows it in
    another form (some sandboxed kernels give an empty file): the worker leaves it alone then."""
    try:
        return int(Path(f"/proc/{pid}/autogroup").read_text().split("nice")[-1])
    except (OSError, ValueError):
        return None


@pytest.mark.parametrize(
    ("options", "niceness", "own_session"),
    [([], 10, False), (["--nice", "3"], 3, False), ([], 10, True), (["--nice", "0"], 0, True)],
)
def test_worker_runs_until_sigterm_and_exits_0_at_a_lower_cpu_priority(
    home, options, niceness, own_session
):
    """Lower within its session, and its session lower against the others when it leads
    its own (as `serve` starts it); a session it shares keeps its priority."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "supportdesk", "worker", *options], env=cli_environment(home),
        cwd=home.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=own_session,
    )  # fmt: skip
    try:
        assert worker.stdout is not None
        assert "Background worker started" in worker.stdout.readline()
        time.sleep(0.5)  # into its polling loop
        assert worker.poll() is None
        ours = os.getpriority(os.PRIO_PROCESS, 0)
        assert os.getpriority(os.PRIO_PROCESS, worker.pid) == min(19, ours + niceness)
        our_group = _autogroup_niceness("self")
        if our_group is not None:  # Linux with autogroup scheduling, as Debian's kernels
            expected = min(19, our_group + niceness) if own_session else our_group
            assert _autogroup_niceness(worker.pid) == expected
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=10) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--email", "not-an-email", "--role", "agent"], "not an email address"),
        (["--email", "x" * 300 + "@example.com", "--role", "agent"], "email"),
        (["--email", "long@example.com", "--role", "customer", "--org", "O" * 1000], "org"),
        (["--email", "tab@example.com", "--role", "agent", "--name", "N" * 1000], "name"),
    ],
)
def test_createuser_refuses_malformed_and_oversized_input_and_creates_nothing(home, args, message):
    result = supportdesk(home, "createuser", *args)
    assert result.returncode == 1
    assert message in result.stderr.lower()
    assert "Traceback" not in result.stderr
    assert rows(home, "SELECT COUNT(*) FROM accounts_user") == [(len(AGENTS),)]
    assert rows(home, "SELECT COUNT(*) FROM accounts_organization") == [(0,)]


@pytest.mark.parametrize(("cpus", "processes"), [(None, 2), (1, 2), (2, 4), (3, 6), (16, 8)])
def test_web_servers_default_to_two_processes_per_cpu_with_two_threads(
    monkeypatch, cpus, processes
):
    from supportdesk import cli

    monkeypatch.setattr(cli.os, "cpu_count", lambda: cpus)
    for command in ("serve", "web"):
        args = cli.build_parser().parse_args([command])
        assert (args.workers, args.threads) == (processes, 2)


@pytest.mark.parametrize("value", ["-1", "20", "ten"])
def test_worker_refuses_a_niceness_out_of_range(home, value):
    result = supportdesk(home, "worker", "--nice", value)
    assert result.returncode == 2
    assert "--nice" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "written"),
    [
        ("/autogroup-7 nice 2\n", "5"),
        ("/autogroup-7 nice 18\n", "19"),
        ("odd\n", "odd\n"),
        ("", ""),
    ],
)
def test_a_session_leaders_autogroup_is_lowered_and_an_odd_one_left_alone(
    tmp_path, monkeypatch, content, written
):
    from supportdesk import cli

    autogroup = tmp_path / "autogroup"
    autogroup.write_text(content)
    monkeypatch.setattr(cli.os, "getsid", lambda pid: os.getpid())  # as if it led a session
    monkeypatch.setattr(cli.os, "nice", lambda increment: 0)  # this test process keeps its own
    cli.lower_priority(3, autogroup=autogroup)
    assert autogroup.read_text() == written
