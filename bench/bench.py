"""Seed a large support desk and measure its pages through the production server.

Run it as `bench/run` (or `make bench`); `bench/run --help` lists the options. See
bench/README.md for what is measured and the figures of the last full run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import measure
import seed

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_HOME = ROOT / "bench" / "var"
TARGET_P95_MS = 50.0


@contextlib.contextmanager
def scratch_home(name: str, home: Path | None) -> Iterator[Path]:
    """The data directory a benchmark writes: `home` when given (it must be new or empty, and
    is kept), else a temporary one, removed after."""
    if home is None:
        path = Path(tempfile.mkdtemp(prefix=f"supportdesk-bench-{name}-"))
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
        return
    path = home.resolve()
    if path.exists() and any(path.iterdir()):
        raise SystemExit(f"bench: {path} is not empty; choose a new directory")
    path.mkdir(parents=True, exist_ok=True)
    yield path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=100, help="organizations (default 100)")
    parser.add_argument(
        "--tickets-per-org",
        type=int,
        default=1000,
        help="mean tickets per organization; the first gets about 5x (default 1000)",
    )
    parser.add_argument(
        "--requests", type=int, default=1000, help="measured requests per page (default 1000)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=1, help="client connections at once (default 1)"
    )
    parser.add_argument(
        "--warmup", type=int, default=20, help="unmeasured requests per page first (default 20)"
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=DEFAULT_HOME,
        help="data directory (default bench/var, emptied first)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="measure the database already seeded in --home instead of seeding",
    )
    parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    parser.add_argument(
        "--server",
        choices=["serve", "gunicorn", "granian"],
        default=None,
        help="`supportdesk serve` (the default), plain gunicorn, or granian (pip install granian) to compare",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="web server processes (default: serve's; 2 for the others)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads per process (default: serve's; 4 for the others)",
    )
    return parser.parse_args()


def server_env(home: Path, port: int | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPPORTDESK_")}
    env.pop("DATABASE_URL", None)  # the target is SQLite in the data directory
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["SUPPORTDESK_HOME"] = str(home)
    env["PYTHONUNBUFFERED"] = "1"
    # The seeded tickets include old Resolved ones: the workers would close (and mail) them
    # while pages are measured, changing what the pages must show.
    env["SUPPORTDESK_AUTO_CLOSE_DAYS"] = "0"
    if port is not None:
        env["SUPPORTDESK_BASE_URL"] = f"http://127.0.0.1:{port}"
    return env


def has_cli() -> bool:
    return importlib.util.find_spec("supportdesk.cli") is not None


def supportdesk_command() -> list[str]:
    script = Path(sys.executable).parent / "supportdesk"
    return [str(script)] if script.exists() else [sys.executable, "-m", "supportdesk"]


def manage_command() -> list[str]:
    """`supportdesk manage`, or plain django-admin while the command line does not exist."""
    if has_cli():
        return [*supportdesk_command(), "manage"]
    return [sys.executable, "-m", "django"]


def prepare_home(args: argparse.Namespace) -> Path:
    home: Path = args.home.resolve()
    database = home / "supportdesk.sqlite3"
    if args.reuse:
        if not database.exists():
            raise SystemExit(f"bench: --reuse, but {home} holds no database")
        return home
    if home.exists() and any(home.iterdir()):
        if home != DEFAULT_HOME:
            raise SystemExit(f"bench: {home} is not empty; choose a new directory")
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    return home


def migrate_and_seed(args: argparse.Namespace, home: Path) -> None:
    env = server_env(home)
    print(f"bench: migrating a fresh SQLite database in {home}")
    migrate = [*supportdesk_command(), "migrate"] if has_cli() else [*manage_command(), "migrate"]
    subprocess.run(
        migrate,
        env={**env, "DJANGO_SETTINGS_MODULE": "supportdesk.settings"},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    print(f"bench: seeding {args.orgs} organizations x {args.tickets_per_org} tickets")
    started = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "seed.py"),
            "--orgs",
            str(args.orgs),
            "--tickets-per-org",
            str(args.tickets_per_org),
            "--seed",
            str(args.seed),
        ],
        env={**env, "DJANGO_SETTINGS_MODULE": "supportdesk.settings"},
        check=True,
    )
    (home / "bench-seed.json").write_text(
        json.dumps(
            {
                "orgs": args.orgs,
                "tickets_per_org": args.tickets_per_org,
                "seed": args.seed,
                "seconds": round(time.monotonic() - started, 1),
            }
        )
    )


def start_server(args: argparse.Namespace, home: Path, port: int) -> subprocess.Popen[bytes]:
    env = server_env(home, port)
    log = (home / "server.log").open("wb")
    if args.server == "serve":
        command = [*supportdesk_command(), "serve", "--port", str(port)]
        for option in ("workers", "threads"):
            if getattr(args, option) is not None:
                command += [f"--{option}", str(getattr(args, option))]
    else:
        subprocess.run(
            [*manage_command(), "collectstatic", "--noinput", "-v0"],
            env={**env, "DJANGO_SETTINGS_MODULE": "supportdesk.settings"},
            check=True,
        )
        command = (
            [
                str(Path(sys.executable).parent / "gunicorn"),
                "supportdesk.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--worker-class",
                "gthread",
                "--workers",
                str(args.workers or 2),
                "--threads",
                str(args.threads or 4),
            ]
            if args.server == "gunicorn"
            else [
                str(Path(sys.executable).parent / "granian"),
                "--interface",
                "wsgi",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(args.workers or 2),
                "--blocking-threads",
                str(args.threads or 4),
                "supportdesk.wsgi:application",
            ]
        )
    print(f"bench: starting `{Path(command[0]).name} {' '.join(command[1:])}`")
    return subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def database_counts(home: Path) -> dict[str, int]:
    db = sqlite3.connect(f"file:{home / 'supportdesk.sqlite3'}?mode=ro", uri=True)
    try:
        return {
            table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608
            for table in (
                "accounts_organization",
                "accounts_user",
                "tickets_ticket",
                "tickets_response",
                "events_event",
            )
        }
    finally:
        db.close()


def report(results: list[measure.Result], rss: dict[str, object], meta: dict[str, object]) -> str:
    lines = [
        "| page | requests | failures | median ms | p95 ms | p99 ms | requests/s | p95 < 50 ms |",
        "|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in results:
        ok = "yes" if r.p95 < TARGET_P95_MS and r.failures == 0 else "**no**"
        lines.append(
            f"| {r.name} | {r.requests} | {r.failures} | {r.median:.1f} | {r.p95:.1f} "
            f"| {r.p99:.1f} | {r.per_second:.0f} | {ok} |"
        )
    lines.append("")
    lines.append(
        f"Resident memory of `supportdesk serve` and its children: "
        f"{rss['before_mib']} MiB after start-up, {rss['after_mib']} MiB after the run "
        f"({rss['processes']} processes)."
    )
    lines.append(f"Data: {meta['counts']}; concurrency {meta['concurrency']}.")
    if meta["seeding"]:
        lines.append(f"Seeding: {meta['seeding']}.")
    lines.append(
        f"Load average (1 min) before and after the measurements: {meta['load_average_1min']}."
    )
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    if args.server is None:
        args.server = "serve" if has_cli() else "gunicorn"
    home = prepare_home(args)
    if not args.reuse:
        migrate_and_seed(args, home)
    expected = measure.Expected.read(home / "supportdesk.sqlite3")
    print(
        f"bench: customer {expected.customer_email} (organization {expected.organization_id}, "
        f"{expected.organization_tickets} tickets), agent {expected.agent_email}"
    )
    port = measure.free_port()
    server = start_server(args, home, port)
    try:
        up = measure.wait_until_up(port, server)
        print(f"bench: server answers on port {port} after {up:.1f} s")
        cookies = {
            "customer": measure.log_in(port, expected.customer_email, seed.PASSWORD),
            "agent": measure.log_in(port, expected.agent_email, seed.PASSWORD),
        }
        before, _ = measure.resident_kib(server.pid)
        load_before = Path("/proc/loadavg").read_text().split()[0]
        results = []
        for page in measure.pages(expected):
            result = measure.run_page(
                page,
                port,
                cookies[page.persona],
                requests=args.requests,
                concurrency=args.concurrency,
                warmup=args.warmup,
                seed=args.seed,
            )
            print(
                f"bench: {result.name}: median {result.median:.1f} ms, p95 {result.p95:.1f} ms, "
                f"{result.per_second:.0f}/s, {result.failures} failures",
                flush=True,
            )
            for sample in result.failure_samples:
                print(f"bench:   {sample}")
            results.append(result)
        after, processes = measure.resident_kib(server.pid)
        load_after = Path("/proc/loadavg").read_text().split()[0]
    finally:
        code, seconds = measure.stop(server)
    print(f"bench: server stopped with exit code {code} after {seconds:.1f} s")
    rss = {
        "before_mib": round(before / 1024),
        "after_mib": round(after / 1024),
        "processes": processes,
    }
    seed_record = home / "bench-seed.json"
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "server": args.server,
        "concurrency": args.concurrency,
        "requests_per_page": args.requests,
        "python": platform.python_version(),
        "counts": database_counts(home),
        "customer_organization_tickets": expected.organization_tickets,
        "server_exit_code": code,
        "load_average_1min": [float(load_before), float(load_after)],
        "seeding": json.loads(seed_record.read_text()) if seed_record.exists() else None,
    }
    (home / "results.json").write_text(
        json.dumps({**meta, "rss": rss, "pages": [r.as_dict() for r in results]}, indent=2)
    )
    print()
    print(report(results, rss, meta))
    failed = any(r.failures for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
