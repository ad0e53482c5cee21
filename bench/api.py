"""Measure the REST API through the production server, beside the framework's ceiling.

Run it as `bench/run-api` after `bench/run` has seeded bench/var; `bench/run-api --help` lists
the options and bench/README.md ("API") what is measured and the last figures.

The seeded database is copied to a scratch data directory first, so the tickets created here
never grow bench/var. One `supportdesk serve` (rate limit off, the ceiling view switched on)
answers everything: the API and the ceiling share its processes, settings, middleware and
database, and are measured in the same run, one after the other at each concurrency.
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import bench
import measure

ROOT = Path(__file__).resolve().parent.parent
PAGE_SIZE = 25
LIST_PATH = f"/api/v1/tickets?queue=all&limit={PAGE_SIZE}"
CREATE_PATH = "/api/v1/tickets"
CEILING_PATH = "/bench/ceiling"
TARGET_LIST_P95_MS = 50.0
TARGET_SHARE_OF_CEILING = 0.20
TARGET_CREATES_PER_SECOND = {1: 130.0, 8: 265.0}

# (method, path, body, headers) of one request, and the check of its answer.
Request = tuple[str, str, bytes | None, dict[str, str]]
Check = Callable[[int, bytes], str | None]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run-api", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source",
        type=Path,
        default=bench.DEFAULT_HOME,
        help="data directory seeded by bench/run, copied, never written (default bench/var)",
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=None,
        help="scratch data directory, new or empty (default: a temporary one, removed after)",
    )
    parser.add_argument(
        "--seconds", type=float, default=20, help="measured seconds per write test (default 20)"
    )
    parser.add_argument(
        "--warmup", type=float, default=3, help="unmeasured seconds before each (default 3)"
    )
    parser.add_argument(
        "--clients",
        default="1,8",
        help="concurrent clients for the write tests, comma-separated (default 1,8)",
    )
    parser.add_argument(
        "--list-requests",
        type=int,
        default=500,
        help="measured requests per list page (default 500)",
    )
    parser.add_argument(
        "--server",
        choices=["web", "serve"],
        default="web",
        help="`web`: the web server alone, as behind a load balancer with the workers on other"
        " machines (the creates still write their mail runs); `serve`: with its two background"
        " workers mailing each acknowledgement on the same CPUs (default web)",
    )
    parser.add_argument(
        "--workers", type=int, default=None, help="web server processes (default: the server's)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="threads per process (default: the server's)"
    )
    parser.add_argument(
        "--depth", type=int, default=100, help="the deep list page's number (default 100)"
    )
    return parser.parse_args()


@dataclass
class Figure:
    """Requests of one kind: their latencies, failures and rate over the measured window."""

    name: str
    clients: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)
    failures: int
    failure_samples: list[str] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return len(self.latencies_ms)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def quantile(self, percent: int) -> float:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else float("nan")
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[percent - 1]

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "clients": self.clients,
            "requests": self.requests,
            "failures": self.failures,
            "seconds": round(self.seconds, 2),
            "per_second": round(self.per_second, 1),
            "median_ms": round(statistics.median(self.latencies_ms), 2)
            if self.latencies_ms
            else None,
            "p95_ms": round(self.quantile(95), 2) if self.latencies_ms else None,
            "p99_ms": round(self.quantile(99), 2) if self.latencies_ms else None,
            "failure_samples": self.failure_samples[:5],
        }


def copy_home(source: Path, home: Path) -> None:
    """The database through SQLite's backup API (consistent even with a WAL beside it), and
    the collected static files, so that `serve` need not collect them again."""
    database = source / "supportdesk.sqlite3"
    if not database.exists():
        raise SystemExit(f"bench: {database} does not exist; seed it first with bench/run")
    started = time.monotonic()
    src = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    dst = sqlite3.connect(home / "supportdesk.sqlite3")
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()
    for name in ("secret_key", "static.fingerprint"):
        if (source / name).exists():
            shutil.copy2(source / name, home / name)
    if (source / "static").is_dir():
        shutil.copytree(source / "static", home / "static")
    print(f"bench: copied {database} to {home} in {time.monotonic() - started:.1f} s")


def personas(database: Path) -> tuple[str, str]:
    """(an agent, a customer of the largest organization): the agent lists every ticket and
    opens tickets on the customer's behalf."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        (agent,) = db.execute(
            "SELECT email FROM accounts_user WHERE role = 'agent' AND is_active ORDER BY id LIMIT 1"
        ).fetchone()
        (customer,) = db.execute(
            "SELECT email FROM accounts_user WHERE role = 'customer' AND is_active"
            " AND organization_id = (SELECT organization_id FROM tickets_ticket"
            " GROUP BY organization_id ORDER BY COUNT(*) DESC LIMIT 1) ORDER BY id LIMIT 1"
        ).fetchone()
    finally:
        db.close()
    return agent, customer


def expected_order(database: Path, rows: int) -> list[int]:
    """The agent's list, most recently updated first: what the pages must hold."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        return [
            number
            for (number,) in db.execute(
                "SELECT number FROM tickets_ticket ORDER BY updated_at DESC, id DESC LIMIT ?",
                (rows,),
            )
        ]
    finally:
        db.close()


def run_supportdesk(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [*bench.supportdesk_command(), *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def send(client: measure.Client, request: Request) -> tuple[int, bytes, float]:
    method, path, body, headers = request
    started = time.perf_counter()
    try:
        status, _, data = client.request(method, path, body=body, headers=headers)
    except (OSError, http.client.HTTPException) as error:
        status, data = 0, repr(error).encode()
    return status, data, (time.perf_counter() - started) * 1000


def run_for(
    name: str,
    port: int,
    *,
    clients: int,
    seconds: float,
    warmup: float,
    next_request: Callable[[int, int], tuple[Request, Check]],
) -> Figure:
    """`clients` threads, each with its own keep-alive connection, send requests back to back
    for warmup + seconds; those started in the measured window count, and the rate is their
    number over the time from the window's start until the last of them was answered."""
    lock = threading.Lock()
    latencies: list[float] = []
    failures: list[str] = []
    finished = [0.0]
    start_gate = threading.Barrier(clients + 1)
    window: list[float] = []

    def worker(index: int) -> None:
        client = measure.Client(port)
        count = 0
        start_gate.wait()
        begin, end = window
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            request, check = next_request(index, count)
            count += 1
            status, body, elapsed = send(client, request)
            problem = check(status, body)
            if now >= begin:
                with lock:
                    latencies.append(elapsed)
                    finished[0] = max(finished[0], time.perf_counter())
                    if problem:
                        failures.append(f"{request[0]} {request[1]}: {problem}")
        client.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    now = time.perf_counter()
    window.extend([now + warmup, now + warmup + seconds])
    start_gate.wait()
    for thread in threads:
        thread.join()
    measured = max(finished[0] - window[0], 1e-9) if latencies else 0.0
    return Figure(name, clients, measured, latencies, len(failures), failures[:5])


def create_requests(
    token: str, customer: str, run_id: str
) -> Callable[[int, int], tuple[Request, Check]]:
    """POST /api/v1/tickets with a different title each time; the answer must be a 201 with
    the new ticket, its number and the title sent."""

    def next_request(index: int, count: int) -> tuple[Request, Check]:
        title = f"bench {run_id} client {index} create {count}"
        body = json.dumps(
            {
                "type": "incident",
                "priority": "high",
                "title": title,
                "description": "Opened by bench/api.py to measure the API.",
                "requester": customer,
            }
        ).encode()
        headers = {**bearer(token), "Content-Type": "application/json"}

        def check(status: int, data: bytes) -> str | None:
            if status != 201:
                return f"status {status}: {data[:200]!r}"
            try:
                ticket = json.loads(data)
            except ValueError:
                return "the body is not JSON"
            if not isinstance(ticket.get("number"), int) or ticket.get("title") != title:
                return f"not the new ticket: {data[:200]!r}"
            return None

        return ("POST", CREATE_PATH, body, headers), check

    return next_request


def ceiling_requests(_index: int, count: int) -> tuple[Request, Check]:
    def check(status: int, data: bytes) -> str | None:
        return None if status == 204 else f"status {status}: {data[:200]!r}"

    return ("POST", CEILING_PATH, str(count).encode(), {"Content-Type": "text/plain"}), check


def page_check(expected: list[int], cursor_out: list[str]) -> Check:
    """A list page must hold exactly the expected tickets in order, and a next cursor."""

    def check(status: int, data: bytes) -> str | None:
        if status != 200:
            return f"status {status}: {data[:200]!r}"
        try:
            page = json.loads(data)
            numbers = [item["number"] for item in page["items"]]
        except (ValueError, KeyError, TypeError):
            return f"not a page of tickets: {data[:200]!r}"
        if numbers != expected:
            return f"tickets {numbers[:3]}..., expected {expected[:3]}..."
        if not page.get("next_cursor"):
            return "no next_cursor"
        cursor_out[:] = [page["next_cursor"]]
        return None

    return check


def measure_list(
    port: int, token: str, order: list[int], *, depth: int, requests: int
) -> tuple[Figure, Figure]:
    """p95 of the first page, then of page `depth` (reached by following next_cursor)."""
    client = measure.Client(port)
    headers = bearer(token)
    cursor: list[str] = []
    figures = []
    path = LIST_PATH
    for page_number in range(1, depth + 1):
        expected = order[(page_number - 1) * PAGE_SIZE : page_number * PAGE_SIZE]
        check = page_check(expected, cursor)
        if page_number in (1, depth):
            name = f"agent's list, page {page_number}"
            latencies, failures = [], []
            for _ in range(20):  # warm-up, unmeasured
                send(client, ("GET", path, None, headers))
            started = time.perf_counter()
            for _ in range(requests):
                status, body, elapsed = send(client, ("GET", path, None, headers))
                latencies.append(elapsed)
                if problem := check(status, body):
                    failures.append(f"GET {path[:80]}: {problem}")
            seconds = time.perf_counter() - started
            figures.append(Figure(name, 1, seconds, latencies, len(failures), failures[:5]))
        else:
            status, body, _ = send(client, ("GET", path, None, headers))
            if problem := check(status, body):
                raise SystemExit(f"bench: following the cursor to page {page_number}: {problem}")
        if not cursor:
            samples = "; ".join(figures[-1].failure_samples[:2]) if figures else ""
            raise SystemExit(
                f"bench: page {page_number} never showed the expected tickets: {samples}"
            )
        path = f"{LIST_PATH}&cursor={urllib.parse.quote(cursor[0])}"
    client.close()
    return figures[0], figures[1]


def api_answers(port: int, token: str) -> str | None:
    """None when the API lists tickets for the token, else why not."""
    client = measure.Client(port)
    status, body, _ = send(client, ("GET", LIST_PATH, None, bearer(token)))
    client.close()
    return None if status == 200 else f"GET {LIST_PATH} answered {status}: {body[:200]!r}"


def report(writes: list[tuple[Figure, Figure | None]], lists: list[Figure]) -> str:
    lines = [
        "| API creates (`POST /api/v1/tickets`) | clients | requests | failures | per second "
        "| median ms | p95 ms | same-run ceiling per second | share of ceiling | target met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for ceiling, creates in writes:
        if creates is None:
            lines.append(
                f"| (no API) | {ceiling.clients} | | | | | | {ceiling.per_second:.0f} | | |"
            )
            continue
        share = creates.per_second / ceiling.per_second if ceiling.per_second else 0.0
        wanted = TARGET_CREATES_PER_SECOND.get(creates.clients, 0.0)
        ok = (
            share >= TARGET_SHARE_OF_CEILING
            and creates.per_second >= wanted
            and creates.failures == 0
            and ceiling.failures == 0
        )
        lines.append(
            f"| creates | {creates.clients} | {creates.requests} | {creates.failures} "
            f"| {creates.per_second:.0f} | {creates.quantile(50):.1f} | {creates.quantile(95):.1f} "
            f"| {ceiling.per_second:.0f} ({ceiling.failures} failures) | {share:.0%} "
            f"| {'yes' if ok else '**no**'} |"
        )
    if lists:
        lines += [
            "",
            "| API list page (agent, `queue=all`) | requests | failures | median ms | p95 ms "
            "| p99 ms | p95 < 50 ms |",
            "|---|---:|---:|---:|---:|---:|:---:|",
        ]
        for figure in lists:
            ok = figure.quantile(95) < TARGET_LIST_P95_MS and figure.failures == 0
            lines.append(
                f"| {figure.name} | {figure.requests} | {figure.failures} "
                f"| {figure.quantile(50):.1f} | {figure.quantile(95):.1f} | {figure.quantile(99):.1f} "
                f"| {'yes' if ok else '**no**'} |"
            )
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    clients = [int(n) for n in args.clients.split(",") if n.strip()]
    source = args.source.resolve()
    with bench.scratch_home("api", args.home) as home:
        return run(args, source, home, clients)


def run(args: argparse.Namespace, source: Path, home: Path, clients: list[int]) -> int:
    copy_home(source, home)
    database = home / "supportdesk.sqlite3"
    agent, customer = personas(database)
    order = expected_order(database, args.depth * PAGE_SIZE)
    port = measure.free_port()
    env = bench.server_env(home, port)
    env["SUPPORTDESK_API_RATE_LIMIT"] = "0"
    env["SUPPORTDESK_BENCH_CEILING"] = "true"
    run_supportdesk(env, "migrate")
    token = run_supportdesk(env, "token", "create", "--email", agent).strip().splitlines()[-1]
    print(f"bench: agent {agent}, tickets opened for customer {customer}")

    log = (home / "server.log").open("wb")
    command = [*bench.supportdesk_command(), args.server, "--port", str(port)]
    for option in ("workers", "threads"):
        if getattr(args, option) is not None:
            command += [f"--{option}", str(getattr(args, option))]
    print(f"bench: starting `supportdesk {' '.join(command[1:])}` with the rate limit off")
    server = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    writes: list[tuple[Figure, Figure | None]] = []
    lists: list[Figure] = []
    try:
        up = measure.wait_until_up(port, server)
        print(f"bench: server answers on port {port} after {up:.1f} s")
        missing_api = api_answers(port, token)
        if missing_api:
            print(f"bench: the API does not answer: {missing_api}; measuring the ceiling only")
        load_before = Path("/proc/loadavg").read_text().split()[0]
        rss_before, _ = measure.resident_kib(server.pid)
        if not missing_api:
            first, deep = measure_list(
                port, token, order, depth=args.depth, requests=args.list_requests
            )
            lists = [first, deep]
            for figure in lists:
                print(
                    f"bench: {figure.name}: p95 {figure.quantile(95):.1f} ms, "
                    f"{figure.failures} failures"
                )
        run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        for count in clients:
            ceiling = run_for(
                "ceiling",
                port,
                clients=count,
                seconds=args.seconds,
                warmup=args.warmup,
                next_request=ceiling_requests,
            )
            print(f"bench: ceiling, {count} clients: {ceiling.per_second:.0f}/s")
            creates = None
            if not missing_api:
                creates = run_for(
                    "creates",
                    port,
                    clients=count,
                    seconds=args.seconds,
                    warmup=args.warmup,
                    next_request=create_requests(token, customer, f"{run_id}-{count}"),
                )
                print(
                    f"bench: creates, {count} clients: {creates.per_second:.0f}/s, "
                    f"{creates.failures} failures"
                )
                for sample in creates.failure_samples:
                    print(f"bench:   {sample}")
            writes.append((ceiling, creates))
        rss_after, processes = measure.resident_kib(server.pid)
        load_after = Path("/proc/loadavg").read_text().split()[0]
    finally:
        code, seconds = measure.stop(server)
    print(f"bench: server stopped with exit code {code} after {seconds:.1f} s")
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "seconds_per_write_test": args.seconds,
        "warmup_seconds": args.warmup,
        "api": not missing_api,
        "server": args.server,
        "writes": [
            {"ceiling": c.as_dict(), "creates": a.as_dict() if a else None} for c, a in writes
        ],
        "lists": [f.as_dict() for f in lists],
        "rss_mib": [round(rss_before / 1024), round(rss_after / 1024)],
        "processes": processes,
        "load_average_1min": [float(load_before), float(load_after)],
        "server_exit_code": code,
    }
    (source / "results-api.json").write_text(json.dumps(results, indent=2))
    print()
    print(report(writes, lists))
    print(
        f"\nResident memory {results['rss_mib'][0]} -> {results['rss_mib'][1]} MiB "
        f"({processes} processes); load average {load_before} -> {load_after}."
    )
    failed = bool(missing_api) or any(f.failures for pair in writes for f in pair if f is not None)
    failed = failed or any(f.failures for f in lists)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
