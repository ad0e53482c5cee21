"""Measure pages through the running production server, as a browser would reach them.

The server is started the way a user starts it (`supportdesk serve`), the client logs in over
HTTP with the login form, then fetches each page many times over loopback with a few
keep-alive connections (http.client; a connection the server closes is reopened, and that
cost is part of the figure). Every response must be a 200 with the content the page is
expected to show; anything else is counted as a failure, never as a fast response.
"""

from __future__ import annotations

import contextlib
import html
import http.client
import os
import re
import signal
import socket
import sqlite3
import statistics
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

PAGE_SIZE = 25
TICKET_LINK = re.compile(rb"/tickets/(\d+)/")


@dataclass
class Ticket:
    number: int
    organization_id: int
    status: str
    assigned: bool
    title: str


@dataclass
class Expected:
    """What the seeded database says each page must show, read before the server starts."""

    tickets: dict[int, Ticket]
    customer_email: str
    agent_email: str
    organization_id: int
    organization_tickets: int

    @classmethod
    def read(cls, database: Path) -> Expected:
        db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT number, organization_id, status, assignee_id IS NOT NULL, title"
                " FROM tickets_ticket ORDER BY updated_at DESC, id DESC"
            ).fetchall()
            org_id, count = db.execute(
                "SELECT organization_id, COUNT(*) FROM tickets_ticket"
                " GROUP BY organization_id ORDER BY COUNT(*) DESC LIMIT 1"
            ).fetchone()
            (customer,) = db.execute(
                "SELECT email FROM accounts_user WHERE role = 'customer' AND is_active"
                " AND organization_id = ? ORDER BY id LIMIT 1",
                (org_id,),
            ).fetchone()
            (agent,) = db.execute(
                "SELECT email FROM accounts_user WHERE role = 'agent' AND is_active"
                " ORDER BY id LIMIT 1"
            ).fetchone()
        finally:
            db.close()
        # Insertion order of the dict is the lists' order: most recently updated first.
        tickets = {r[0]: Ticket(r[0], r[1], r[2], bool(r[3]), r[4]) for r in rows}
        return cls(tickets, customer, agent, org_id, count)


@dataclass
class Page:
    """One page to measure: how to pick the next path, and what a good answer contains."""

    name: str
    persona: str
    next_path: Callable[[Random], str]
    check: Callable[[str, bytes], str | None]


@dataclass
class Result:
    name: str
    requests: int
    failures: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)
    failure_samples: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.latencies_ms)

    @property
    def p95(self) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[94]

    @property
    def p99(self) -> float:
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[98]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def as_dict(self) -> dict[str, object]:
        return {
            "page": self.name,
            "requests": self.requests,
            "failures": self.failures,
            "median_ms": round(self.median, 2),
            "p95_ms": round(self.p95, 2),
            "p99_ms": round(self.p99, 2),
            "max_ms": round(max(self.latencies_ms), 2),
            "requests_per_second": round(self.per_second, 1),
            "failure_samples": self.failure_samples[:5],
        }


def list_check(expected: list[Ticket]) -> Callable[[str, bytes], str | None]:
    """A list page must link the first row the query should return and a full page of
    tickets from the expected set (other links, e.g. to a problem, are allowed)."""
    wanted = {t.number for t in expected}
    first = expected[0].number if expected else None
    full = min(PAGE_SIZE, len(expected))

    def check(path: str, body: bytes) -> str | None:
        linked = {int(n) for n in TICKET_LINK.findall(body)}
        if first is not None and first not in linked:
            return f"{path}: the most recently updated ticket #{first} is not on the page"
        if len(linked & wanted) < full:
            return f"{path}: {len(linked & wanted)} expected tickets listed, not {full}"
        return None

    return check


def ticket_check(expected: Expected) -> Callable[[str, bytes], str | None]:
    def check(path: str, body: bytes) -> str | None:
        number = int(path.strip("/").rsplit("/", 1)[-1])
        title = html.escape(expected.tickets[number].title).encode()
        if title not in body:
            return f"{path}: the title of #{number} is not on the page"
        return None

    return check


def pages(expected: Expected) -> list[Page]:
    tickets = list(expected.tickets.values())
    own = [t for t in tickets if t.organization_id == expected.organization_id]
    own_open = [t for t in own if t.status in ("open", "pending")]
    unassigned = [t for t in tickets if t.status in ("open", "pending") and not t.assigned]
    own_numbers = [t.number for t in own]
    all_numbers = [t.number for t in tickets]
    return [
        Page(
            "customer panel, open (`/tickets/`)",
            "customer",
            lambda _rng: "/tickets/",
            list_check(own_open),
        ),
        Page(
            "customer panel, all (`/tickets/?view=all`)",
            "customer",
            lambda _rng: "/tickets/?view=all",
            list_check(own),
        ),
        Page(
            "customer ticket page (random own ticket)",
            "customer",
            lambda rng: f"/tickets/{rng.choice(own_numbers)}/",
            ticket_check(expected),
        ),
        Page(
            "agent queue, all (`/agent/all/`)",
            "agent",
            lambda _rng: "/agent/all/",
            list_check(tickets),
        ),
        Page(
            "agent queue, unassigned (`/agent/unassigned/`)",
            "agent",
            lambda _rng: "/agent/unassigned/",
            list_check(unassigned),
        ),
        Page(
            "agent ticket page (random ticket)",
            "agent",
            lambda rng: f"/tickets/{rng.choice(all_numbers)}/",
            ticket_check(expected),
        ),
    ]


class Client:
    """One keep-alive connection with the cookies of one signed-in session."""

    def __init__(self, port: int, cookies: dict[str, str] | None = None) -> None:
        self.port = port
        self.cookies = dict(cookies or {})
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in (1, 2):
            try:
                self.connection.request(method, path, body=body, headers=sent)
                response = self.connection.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed an idle keep-alive connection; reopen it once.
                self.connection.close()
                if attempt == 2:
                    raise
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
        if response.getheader("Connection", "").lower() == "close":
            self.connection.close()
        return response.status, dict(response.getheaders()), data

    def close(self) -> None:
        self.connection.close()


def log_in(port: int, email: str, password: str) -> dict[str, str]:
    """Sign in with the login form like a browser: GET for the CSRF cookie, then POST."""
    client = Client(port)
    status, _, body = client.request("GET", "/login/")
    if status != 200 or "csrftoken" not in client.cookies:
        raise SystemExit(f"bench: GET /login/ answered {status} without a CSRF cookie")
    match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body)
    token = match.group(1).decode() if match else client.cookies["csrftoken"]
    form = urllib.parse.urlencode(
        {
            "csrfmiddlewaretoken": token,
            "email": email,
            "username": email,
            "password": password,
        }
    ).encode()
    status, _, _ = client.request(
        "POST",
        "/login/",
        body=form,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Referer": f"http://127.0.0.1:{port}/login/",
        },
    )
    client.close()
    if status != 302 or "sessionid" not in client.cookies:
        raise SystemExit(f"bench: logging in as {email} answered {status}, not a redirect")
    return client.cookies


def run_page(
    page: Page,
    port: int,
    cookies: dict[str, str],
    *,
    requests: int,
    concurrency: int,
    warmup: int,
    seed: int,
) -> Result:
    """Fetch the page `requests` times from `concurrency` connections after a warm-up."""
    lock = threading.Lock()
    latencies: list[float] = []
    failures: list[str] = []
    remaining = [requests]

    def fetch(client: Client, rng: Random, *, counted: bool) -> None:
        path = page.next_path(rng)
        started = time.perf_counter()
        try:
            status, _, body = client.request("GET", path)
        except (OSError, http.client.HTTPException) as error:
            status, body = 0, repr(error).encode()
        elapsed = (time.perf_counter() - started) * 1000
        problem = f"{path}: status {status}" if status != 200 else page.check(path, body)
        if counted:
            with lock:
                latencies.append(elapsed)
                if problem:
                    failures.append(problem)

    def worker(index: int) -> None:
        client = Client(port, cookies)
        rng = Random(seed * 1000 + index)
        while True:
            with lock:
                if remaining[0] == 0:
                    break
                remaining[0] -= 1
            fetch(client, rng, counted=True)
        client.close()

    warm = Client(port, cookies)
    rng = Random(seed)
    for _ in range(warmup):
        fetch(warm, rng, counted=False)
    warm.close()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return Result(page.name, requests, len(failures), seconds, latencies, failures[:5])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> float:
    """Seconds until /login/ answers 200; raises if the server exits or never answers."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise SystemExit(f"bench: the server exited with {process.returncode} at start")
        for path in ("/healthz", "/login/"):
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", path)
                status = connection.getresponse().status
                connection.close()
            except OSError:
                break
            if status == 200:
                return time.monotonic() - started
        time.sleep(0.2)
    raise SystemExit(f"bench: the server did not answer on port {port} within {timeout:.0f} s")


def process_tree(root: int) -> list[int]:
    """The pid and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def resident_kib(root: int) -> tuple[int, int]:
    """(VmRSS summed over the process tree in KiB, number of processes)."""
    total, count = 0, 0
    for pid in process_tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
                count += 1
    return total, count


def stop(process: subprocess.Popen[bytes], timeout: float = 10) -> tuple[int | None, float]:
    """Ctrl-C the server as a terminal would (SIGINT to its process group, which it leads:
    it was started in a new session); returns (exit code or None if it had to be killed,
    seconds it took)."""
    started = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)
    try:
        code: int | None = process.wait(timeout)
    except subprocess.TimeoutExpired:
        for pid in reversed(process_tree(process.pid)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()
        code = None
    return code, time.monotonic() - started
