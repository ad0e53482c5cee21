"""The `supportdesk` command: a thin adapter over the services, like the web and the API.

Every domain error becomes a message on stderr and exit status 1. `serve` runs the web server,
the background workers and the mail gateway as child processes in their own process groups,
so that Ctrl-C or SIGTERM stops every one of them (and their own children) before `serve` exits.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supportdesk.accounts.models import ApiToken

STOP_GRACE_SECONDS = 7.0  # then SIGKILL: Ctrl-C must finish within 10 s whatever a child does
READY_TIMEOUT_SECONDS = 30.0
# How much lower the workers' CPU priority is than the web server's and the gateway's:
# enough that they get the CPU first when both want it (nice 10 weighs a tenth of nice 0).
WORKER_NICENESS = 10
ROLES = ("customer", "agent", "admin")


class CommandLineError(Exception):
    """A problem the user can fix; printed as is, exit status 1."""


# ---------------------------------------------------------------- set-up


def _setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportdesk.settings")
    import django  # configured only for the commands that need it

    django.setup()


def require_secret_key() -> None:
    """Several machines on one database must share one key, so only SQLite may generate it."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        key = settings.SECRET_KEY
    except ImproperlyConfigured:  # Django refuses to hand out an empty key
        key = ""
    if not key:
        raise CommandLineError(
            "SUPPORTDESK_SECRET_KEY (or SUPPORTDESK_SECRET_KEY_FILE) must be set when "
            "DATABASE_URL is not SQLite: every web and worker process must share one key."
        )


def _say(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------- database, static files, demo


def migrate() -> None:
    from django.conf import settings
    from django.core.management import call_command

    database = settings.DATABASES["default"]
    where = (
        database["NAME"] if settings.USING_SQLITE else f"{database['ENGINE']} {database['NAME']}"
    )
    _say(f"Applying database migrations ({where})…")
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    from supportdesk.database import update_statistics

    executor = MigrationExecutor(connection)
    pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    call_command("migrate", interactive=False, verbosity=0)
    if update_statistics(schema_changed=bool(pending)) == "analyzed":
        _say("Collected the query planner's statistics.")
    _say("Database is up to date.")


def _static_sources_fingerprint() -> str:
    """A digest of every static source file's path, size and time, to skip unneeded runs."""
    from django.contrib.staticfiles.finders import get_finders

    digest = hashlib.sha256()
    for finder in get_finders():
        for path, storage in finder.list([]):
            full = Path(storage.path(path))
            stat = full.stat()
            digest.update(f"{path}\0{full}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def collect_static_when_needed() -> None:
    """The manifest storage serves hashed names from STATIC_ROOT: collect them once per change
    of the sources. Debug and test settings serve from the apps directly."""
    from django.conf import settings
    from django.contrib.staticfiles.storage import (
        ManifestFilesMixin,
        staticfiles_storage,
    )
    from django.core.management import call_command

    if not isinstance(staticfiles_storage, ManifestFilesMixin):
        return
    root = Path(settings.STATIC_ROOT)
    stamp = root.parent / f"{root.name}.fingerprint"  # outside the served directory
    fingerprint = _static_sources_fingerprint()
    manifest = root / staticfiles_storage.manifest_name
    if manifest.exists() and stamp.exists() and stamp.read_text() == fingerprint:
        return
    _say(f"Collecting static files into {root}…")
    call_command("collectstatic", interactive=False, verbosity=0)
    stamp.write_text(fingerprint)


def seed_demo_data() -> list[tuple[str, str, str]]:
    from supportdesk.demo import seed_demo

    _say("Seeding demo data (only into an empty database)…")
    logins = seed_demo()
    if not logins:
        _say("The database holds other data already: no demo data was added.")
    return logins


def print_logins(logins: Sequence[tuple[str, str, str]]) -> None:
    if not logins:
        return
    _say("Demo logins (email, password, role):")
    email_width = max(len(email) for email, _password, _role in logins)
    password_width = max(len(password) for _email, password, _role in logins)
    for email, password, role in logins:
        _say(f"  {email:<{email_width}}  {password:<{password_width}}  {role}")


# ---------------------------------------------------------------- child processes


def _die_with_parent() -> None:
    """Run in the child before exec: its own process group (so a terminal's Ctrl-C reaches
    only `serve`, which then stops each group in order) and SIGTERM if `serve` itself dies."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _child_environment() -> dict[str, str]:
    """The children must see the same data directory even if started elsewhere."""
    from django.conf import settings

    env = dict(os.environ)
    env["SUPPORTDESK_HOME"] = str(settings.HOME)
    env.setdefault("DJANGO_SETTINGS_MODULE", "supportdesk.settings")
    return env


def gunicorn_command(host: str, port: int, *, workers: int, threads: int) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "supportdesk.wsgi:application",
        "--bind", f"{_bind_host(host)}:{port}",
        "--worker-class", "gthread",
        "--workers", str(workers),
        "--threads", str(threads),
        "--graceful-timeout", "5",
        "--timeout", "60",
        "--error-logfile", "-",
        "--log-level", "warning",
    ]  # fmt: skip


def worker_command() -> list[str]:
    return [sys.executable, "-m", "supportdesk", "worker"]


def smtpd_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "supportdesk", "smtpd", "--host", host, "--port", str(port)]


def _bind_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class Supervisor:
    """Start children, wait until one exits or a stop is asked for, then stop them all."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.stop_signal: int | None = None

    def request_stop(self, signum: int, _frame: object) -> None:
        self.stop_signal = signum

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)

    def start(self, name: str, command: Sequence[str]) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(  # preexec_fn is safe: this parent runs one thread
            list(command), env=_child_environment(), preexec_fn=_die_with_parent
        )
        self.children.append((name, child))
        return child

    def exited_child(self) -> tuple[str, int] | None:
        for name, child in self.children:
            code = child.poll()
            if code is not None:
                return name, code
        return None

    def wait(self, *, ready: Callable[[], bool] | None = None, on_ready: Callable[[], None]) -> int:
        """Run until a signal (exit 0) or a child's exit (exit 1); always stop every child."""
        announced = ready is None
        if announced:
            on_ready()
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        try:
            while self.stop_signal is None:
                if (exited := self.exited_child()) is not None:
                    name, code = exited
                    print(f"supportdesk: the {name} stopped (exit status {code}).", file=sys.stderr)
                    return 1
                if not announced and ready is not None:
                    if ready():
                        announced = True
                        on_ready()
                    elif time.monotonic() > deadline:
                        print(
                            "supportdesk: the web server did not start listening.", file=sys.stderr
                        )
                        return 1
                time.sleep(0.1 if not announced else 0.25)
            _say(f"\nReceived {signal.Signals(self.stop_signal).name}: stopping…")
            return 0
        finally:
            self.stop_all()

    def stop_all(self) -> None:
        """SIGTERM to each child's whole process group, SIGKILL after the grace period."""
        for _name, child in self.children:
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for _name, child in self.children:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                child.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                _signal_group(child, signal.SIGKILL)
                child.wait()
        # A grandchild that ignored SIGTERM outlives its parent only in the group: end it too.
        for _name, child in self.children:
            _signal_group(child, signal.SIGKILL)


def _signal_group(child: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signum)


def _port_is_open(host: str, port: int) -> bool:
    target = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104
    target = "::1" if target == "::" else target
    try:
        with socket.create_connection((target.strip("[]"), port), timeout=0.5):
            return True
    except OSError:
        return False


def _url(host: str, port: int) -> str:
    return f"http://{_bind_host(host)}:{port}/"


# ---------------------------------------------------------------- commands


def cmd_serve(args: argparse.Namespace) -> int:
    supervisor = Supervisor()
    supervisor.install_signal_handlers()  # a Ctrl-C during start-up ends it after the step
    require_secret_key()
    migrate()
    logins = seed_demo_data() if args.demo and supervisor.stop_signal is None else []
    if supervisor.stop_signal is None:
        collect_static_when_needed()
    if supervisor.stop_signal is not None:
        return 0
    supervisor.start(
        "web server",
        gunicorn_command(args.host, args.port, workers=args.workers, threads=args.threads),
    )
    for number in range(1, args.task_workers + 1):
        supervisor.start(f"background worker {number}", worker_command())
    from django.conf import settings

    smtpd_host, smtpd_port = settings.SMTPD_HOST, settings.SMTPD_PORT
    supervisor.start("mail gateway", smtpd_command(smtpd_host, smtpd_port))

    def announce() -> None:
        _say(f"supportdesk is running on {_url(args.host, args.port)} (Ctrl-C to stop)")
        _say(f"Mail gateway listening on {_bind_host(smtpd_host)}:{smtpd_port}")
        print_logins(logins)

    def ready() -> bool:
        return _port_is_open(args.host, args.port) and _port_is_open(smtpd_host, smtpd_port)

    return supervisor.wait(ready=ready, on_ready=announce)


def cmd_web(args: argparse.Namespace) -> int:
    supervisor = Supervisor()
    supervisor.install_signal_handlers()
    require_secret_key()
    collect_static_when_needed()
    supervisor.start(
        "web server",
        gunicorn_command(args.host, args.port, workers=args.workers, threads=args.threads),
    )
    return supervisor.wait(
        ready=lambda: _port_is_open(args.host, args.port),
        on_ready=lambda: _say(f"Web server listening on {_url(args.host, args.port)}"),
    )


def lower_priority(niceness: int, autogroup: Path = Path("/proc/self/autogroup")) -> None:
    """Lower this process's CPU priority by `niceness`, and its session's when it leads one.

    With autogroup scheduling (Linux's default where it is built in, as in Debian's kernels)
    the CPU is shared between sessions first, and a process's niceness only weighs within
    its own session. `serve` starts each child in a session of its own, so the worker's
    niceness alone changed nothing beside the gateway (bench/README.md, "Mail in"): its
    session's niceness must be lowered too. A worker sharing a session (started from a
    shell with others) leaves the session's alone, which would lower theirs as well.
    """
    os.nice(niceness)
    if os.getsid(0) != os.getpid():
        return
    with contextlib.suppress(OSError, ValueError):  # no autogroup (or an unknown format)
        current = int(autogroup.read_text().split("nice")[-1])
        autogroup.write_text(str(min(19, current + niceness)))


def cmd_worker(args: argparse.Namespace) -> int:
    """django-tasks-db's worker in this process; it handles SIGINT and SIGTERM itself.

    Never with reload: a reload can stop a task half-way (it follows DEBUG by default).
    At a lower CPU priority (`--nice`): a backlog of processing must not slow the mail
    gateway's answers or the pages, which someone is waiting for; the backlog waits, stored."""
    from django.core.management import call_command

    from supportdesk.events.worker import start_sweeper

    require_secret_key()
    if args.nice:
        lower_priority(args.nice)
    _say("Background worker started (Ctrl-C to stop).")
    stop = threading.Event()
    start_sweeper(stop)
    try:
        # A short poll: a wake-up waits at most this long for a free worker (mail goes out
        # within a second of the change), and an idle poll is one indexed SELECT.
        call_command("db_worker", reload=False, interval=0.2, verbosity=1)
    except SystemExit as exit_:  # its signal handler exits with sys.exit(0)
        return int(exit_.code or 0)
    finally:
        stop.set()
    return 0


def cmd_smtpd(args: argparse.Namespace) -> int:
    """The mail gateway in this process, until SIGINT or SIGTERM (exit 0)."""
    from django.conf import settings

    from supportdesk.intake import smtpd

    require_secret_key()
    host = args.host or settings.SMTPD_HOST
    port = args.port or settings.SMTPD_PORT
    return smtpd.run(host, port)


def cmd_fetchmail(args: argparse.Namespace) -> int:
    """Poll the mailboxes' IMAP accounts: once, or until SIGINT or SIGTERM."""
    from supportdesk.intake import imap

    require_secret_key()
    stored = imap.fetch(once=args.once)
    _say(f"Stored {stored} message{'' if stored == 1 else 's'}.")
    return 0


def cmd_migrate(_args: argparse.Namespace) -> int:
    migrate()
    return 0


def cmd_createuser(args: argparse.Namespace) -> int:
    from django.contrib.auth.password_validation import validate_password
    from django.db import transaction

    from supportdesk.accounts import services
    from supportdesk.accounts.models import User

    if args.role == "customer" and not args.org:
        raise CommandLineError(
            "--org is required for a customer: a customer belongs to one organization."
        )
    if args.role != "customer" and args.org:
        raise CommandLineError(
            f"--org is for customers only; an {args.role} sees every organization."
        )
    password = args.password
    generated = password is None
    if generated:
        password = services.generate_password()
    else:
        validate_password(password, User(email=args.email, name=args.name))
    with transaction.atomic():  # a refused user leaves no new organization behind
        organization = services.get_or_create_organization(args.org) if args.org else None
        user = services.create_user(
            email=args.email, role=args.role, password=password,
            organization=organization, name=args.name,
        )  # fmt: skip
    where = f" of {organization.name}" if organization else ""
    _say(f"Created {user.role} {user.email}{where}.")
    if generated:
        _say(f"Password: {password}")
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    from supportdesk.accounts import services

    user = services.find_user(args.email)
    token, secret = services.create_token(
        user, read_only=args.read_only, expires_days=args.expires, name=args.name
    )
    access = "read-only" if token.read_only else "read-write"
    expires = (
        f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else "never expires"
    )
    _say(f"Created {access} token {token.pk} ({token.prefix}…) for {user.email}; it {expires}.")
    _say("The token is shown only now; store it safely:")
    _say(secret)
    return 0


def _token_state(token: ApiToken) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if not token.user.is_active:
        return "user deactivated"
    return "active" if token.is_usable() else "expired"


def cmd_token_list(args: argparse.Namespace) -> int:
    from supportdesk.accounts import services
    from supportdesk.accounts.models import ApiToken

    tokens = ApiToken.objects.select_related("user").order_by("id")
    if args.email:
        tokens = tokens.filter(user=services.find_user(args.email))
    rows = [
        (
            str(t.pk), t.prefix + "…", t.user.email, "read-only" if t.read_only else "read-write",
            f"{t.created_at:%Y-%m-%d}", f"{t.expires_at:%Y-%m-%d}" if t.expires_at else "never",
            f"{t.last_used_at:%Y-%m-%d %H:%M}" if t.last_used_at else "never", _token_state(t),
        )
        for t in tokens
    ]  # fmt: skip
    if not rows:
        _say("No API tokens.")
        return 0
    header = ("ID", "PREFIX", "USER", "ACCESS", "CREATED", "EXPIRES", "LAST USED", "STATE")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        _say("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _find_token(reference: str) -> ApiToken:
    """By id, by the whole secret, or by a prefix that names exactly one token."""
    from supportdesk.accounts import services
    from supportdesk.accounts.models import ApiToken
    from supportdesk.errors import NotFound

    reference = reference.strip().rstrip("…")
    tokens = ApiToken.objects.select_related("user")
    if reference.isdigit():
        matches = list(tokens.filter(pk=int(reference)))
    else:
        matches = list(tokens.filter(digest=services.token_digest(reference)))
        if not matches and reference:
            matches = list(tokens.filter(prefix__startswith=reference[:12]))
    if not matches:
        raise NotFound(f"No API token matches {reference!r}.")
    if len(matches) > 1:
        ids = ", ".join(str(t.pk) for t in matches)
        raise CommandLineError(f"{reference!r} matches several tokens ({ids}): give the id.")
    return matches[0]


def cmd_token_revoke(args: argparse.Namespace) -> int:
    from supportdesk.accounts import services

    token = _find_token(args.token)
    if token.revoked_at is not None:
        _say(f"Token {token.pk} ({token.prefix}…) of {token.user.email} was revoked already.")
        return 0
    services.revoke_token(token)
    _say(f"Revoked token {token.pk} ({token.prefix}…) of {token.user.email}.")
    return 0


def cmd_manage(argv: Sequence[str]) -> int:
    from django.core.management import execute_from_command_line

    execute_from_command_line(["supportdesk manage", *argv])
    return 0


# ---------------------------------------------------------------- parsing


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number <= 0:
        raise argparse.ArgumentTypeError("must be greater than zero")
    return number


def _port(value: str) -> int:
    number = _positive_int(value)
    if number > 65535:
        raise argparse.ArgumentTypeError("a port is at most 65535")
    return number


def default_web_processes() -> int:
    """Two processes per CPU, each with two threads (docs/decisions.md, "HTTP server"): on
    SQLite one transaction writes at a time, and a writer that shares its process's GIL with
    busy threads holds the write lock longer; more processes with fewer threads measured
    faster for API writes (bench/README.md, "API") and no slower for pages."""
    return min(max(2 * (os.cpu_count() or 1), 2), 8)


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=_port, default=8000, help="port to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--workers",
        type=_positive_int,
        default=default_web_processes(),
        help="web server processes (default: 2 per CPU, at least 2, at most 8: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=2,
        help="threads per web server process (default: %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="supportdesk", description="A self-hosted support desk.",
        epilog="Configuration comes from SUPPORTDESK_* variables and DATABASE_URL; see the README.",
    )  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="migrate, then run the web server, the worker and the mail gateway until Ctrl-C",
    )
    _add_server_options(serve)
    serve.add_argument(
        "--task-workers",
        type=_positive_int,
        default=2,
        help="background worker processes, which send the mail (default: %(default)s; one "
        "keeps up with about 55 mails a second on 2 CPUs, see bench/README.md)",
    )
    serve.add_argument(
        "--demo",
        action="store_true",
        help="seed demo data into an empty database and print the logins",
    )
    serve.set_defaults(handler=cmd_serve)

    web = commands.add_parser("web", help="run the web server only (gunicorn)")
    _add_server_options(web)
    web.set_defaults(handler=cmd_web)

    worker = commands.add_parser("worker", help="run the background worker only")
    worker.add_argument(
        "--nice",
        type=int,
        choices=range(20),
        default=WORKER_NICENESS,
        metavar="N",
        help="lower the worker's CPU priority by N (0-19) below the web server's and the mail"
        " gateway's (default: %(default)s)",
    )
    worker.set_defaults(handler=cmd_worker)
    smtpd = commands.add_parser(
        "smtpd", help="run the inbound mail gateway only (SMTP, for the configured mailboxes)"
    )
    smtpd.add_argument(
        "--host",
        default="",
        help="address to listen on (default: SUPPORTDESK_SMTPD_HOST, 127.0.0.1)",
    )
    smtpd.add_argument(
        "--port",
        type=_port,
        default=0,
        help="port to listen on (default: SUPPORTDESK_SMTPD_PORT, 2525)",
    )
    smtpd.set_defaults(handler=cmd_smtpd)

    fetchmail = commands.add_parser("fetchmail", help="poll the mailboxes' IMAP accounts")
    fetchmail.add_argument(
        "--once",
        action="store_true",
        help="fetch what is waiting, then exit (default: keep polling)",
    )
    fetchmail.set_defaults(handler=cmd_fetchmail)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(
        handler=cmd_migrate
    )

    createuser = commands.add_parser("createuser", help="create a user (no prompts)")
    createuser.add_argument("--email", required=True)
    createuser.add_argument("--role", required=True, choices=ROLES)
    createuser.add_argument(
        "--org", help="the customer's organization; created when missing (customers only, required)"
    )
    createuser.add_argument("--password", help="without it a password is generated and printed")
    createuser.add_argument("--name", default="", help="display name")
    createuser.set_defaults(handler=cmd_createuser)

    token = commands.add_parser("token", help="API tokens: create, list, revoke")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_commands.add_parser(
        "create", help="create a token; it is printed as the last line"
    )
    create.add_argument("--email", required=True, help="the user the token acts as")
    create.add_argument(
        "--read-only", action="store_true", help="GET requests only (default: read-write)"
    )
    create.add_argument(
        "--expires",
        type=_positive_int,
        metavar="DAYS",
        help="expire after DAYS days (default: never)",
    )
    create.add_argument("--name", default="", help="a note to tell tokens apart")
    create.set_defaults(handler=cmd_token_create)
    listing = token_commands.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--email", help="only this user's tokens")
    listing.set_defaults(handler=cmd_token_list)
    revoke = token_commands.add_parser("revoke", help="revoke a token at once")
    revoke.add_argument(
        "token", metavar="PREFIX_OR_ID", help="the id, the prefix or the whole token"
    )
    revoke.set_defaults(handler=cmd_token_revoke)

    commands.add_parser("manage", help="run any Django management command", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["manage"]:
        # Everything after `manage` belongs to Django, including --help.
        return _run(lambda: cmd_manage(arguments[1:]))
    args = build_parser().parse_args(arguments)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return _run(lambda: handler(args))


def _run(command: Callable[[], int]) -> int:
    """Map the errors a user can fix to a message and exit status 1, once for every command."""
    from django.core.exceptions import ImproperlyConfigured, ValidationError

    from supportdesk.errors import DomainError

    try:
        _setup_django()
        return command()
    except (DomainError, CommandLineError, ImproperlyConfigured) as error:
        return _fail(str(getattr(error, "message", error)))
    except ValidationError as error:
        return _fail(" ".join(error.messages))
    except KeyboardInterrupt:
        return _fail("Interrupted.", status=130)


def _fail(message: str, *, status: int = 1) -> int:
    print(f"supportdesk: {message}", file=sys.stderr)
    return status
