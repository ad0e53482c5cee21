"""Fill an empty, migrated database with a large, realistic support desk.

Seeding writes the models directly with bulk_create, bypassing the services on purpose: the
services take a row lock and write one ticket at a time, which would turn 100,000 tickets into
hours. The rows written here are the ones the services would write (an Event per creation,
response, assignment and status change; the ticket counter set to the last number), so the
pages read the same shape of data they would in production.

Everything is drawn from one seeded random generator: the same arguments give the same
database.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

PASSWORD = "bench-password-1"  # noqa: S105  (every seeded user's password; a local benchmark)
FIRST_NUMBER = 1000
DAYS_OF_HISTORY = 730
AGENTS = 25

COMPANY_WORDS = [
    "Northwind",
    "Bluebird",
    "Copperleaf",
    "Riverbend",
    "Ironclad",
    "Sunpeak",
    "Greywater",
    "Lakeside",
    "Brightline",
    "Oakridge",
    "Silverpine",
    "Redstone",
    "Clearview",
    "Harborlight",
    "Windmere",
    "Stonebridge",
    "Pinecrest",
    "Goldfield",
    "Maplewood",
    "Fairhaven",
]
COMPANY_KINDS = ["Logistics", "Health", "Retail", "Energy", "Media", "Finance", "Travel", "Foods"]
APP_NAMES = [
    "Webshop",
    "Customer Portal",
    "Billing API",
    "Mobile Backend",
    "Data Warehouse",
    "Intranet",
    "Booking Engine",
    "Reporting",
    "Partner Gateway",
    "Identity Service",
]
ENV_NAMES = ["production", "staging", "test", "development"]
TIME_ZONES = ["UTC", "Europe/Berlin", "Europe/London", "America/New_York", "Asia/Tokyo"]
FIRST_NAMES = [
    "Anna",
    "Ben",
    "Chloe",
    "David",
    "Emma",
    "Felix",
    "Grace",
    "Hugo",
    "Ines",
    "Jonas",
    "Kira",
    "Lukas",
    "Mia",
    "Noah",
    "Olga",
    "Paul",
    "Rosa",
    "Sven",
    "Tara",
    "Uwe",
    "Vera",
    "Yusuf",
]
LAST_NAMES = [
    "Keller",
    "Novak",
    "Schmidt",
    "Rossi",
    "Dubois",
    "Jansen",
    "Nielsen",
    "Moreau",
    "Weber",
    "Fischer",
    "Lindqvist",
    "Costa",
    "Berger",
    "Wagner",
    "Horvat",
    "Silva",
]

SYMPTOMS = [
    "returns 502 errors",
    "is very slow",
    "times out on login",
    "shows a blank page",
    "fails to send e-mails",
    "rejects valid certificates",
    "runs out of disk space",
    "loses sessions after deploy",
    "reports wrong totals",
    "crashes during the nightly job",
    "cannot reach the database",
    "returns stale data",
]
TASKS = [
    "Open port 8443 for the partner VPN",
    "Increase the memory limit",
    "Renew the TLS certificate",
    "Add a read replica",
    "Rotate the database password",
    "Create a staging copy",
    "Schedule a maintenance window",
    "Upgrade PostgreSQL",
    "Add a DNS record",
    "Restore last night's backup",
]
QUESTIONS = [
    "How do I export invoices as CSV?",
    "Which IP addresses do your servers use?",
    "Can we get access logs for last week?",
    "What is the retention of our backups?",
    "How do I add a new user to the portal?",
    "Is there a status page?",
]
SENTENCES = [
    "Since this morning several users report the problem.",
    "It started right after the last deployment.",
    "We restarted the service but it came back after a few minutes.",
    "The monitoring shows a spike in response times at the same time.",
    "Please have a look as soon as possible, our customers are affected.",
    "Attached you find the relevant part of the log.",
    "We did not change anything on our side.",
    "This blocks our release planned for Friday.",
    "Could you check whether this is related to the maintenance?",
    "Thanks for the quick help last time.",
]
AGENT_REPLIES = [
    "Thanks for the report, we are looking into it.",
    "We found the cause: a full log volume on one of the nodes. It is cleaned up now.",
    "The change is scheduled for tonight's maintenance window.",
    "Could you send us the exact time and the request id of a failing request?",
    "We rolled back the deployment; please check whether the problem is gone.",
    "Done. The new setting is active on all nodes.",
    "This is a known problem, we linked it and will update you when it is fixed.",
]
CUSTOMER_REPLIES = [
    "Thanks, that fixed it.",
    "It still happens, here is another example.",
    "Here is the request id you asked for.",
    "Please go ahead, the window suits us.",
    "Confirmed, everything works again.",
]
NOTES = [
    "Checked the load balancer logs, nothing unusual.",
    "Same customer had this in March; see the linked problem.",
    "Escalated to the database team.",
]
LOG_SNIPPET = "```\n2024-05-02T08:14:03Z ERROR upstream timed out (110) while reading response\n```"

TYPE_WEIGHTS = {"incident": 35, "question": 30, "task": 20, "problem": 15}
PRIORITY_WEIGHTS = {"urgent": 5, "high": 20, "normal": 55, "low": 20}
CHANNEL_WEIGHTS = {"web": 70, "email": 20, "api": 5, "phone": 5}


@dataclass
class Totals:
    organizations: int = 0
    users: int = 0
    tickets: int = 0
    responses: int = 0
    events: int = 0
    tag_links: int = 0
    environment_links: int = 0
    ccs: int = 0


@dataclass
class OrgData:
    """One organization's people and scope, as the ticket generator needs them."""

    org_id: int
    domain: str
    customers: list[tuple[int, str]] = field(default_factory=list)  # (id, display name)
    apps: list[tuple[int, list[int], dict[int, str]]] = field(default_factory=list)


def organization_sizes(orgs: int, per_org: int, rng: random.Random) -> list[int]:
    """Ticket counts per organization adding up to orgs x per_org; the first organization
    is clearly the largest (about five times the mean), so the benchmark's customer sees the
    heaviest panel."""
    total = orgs * per_org
    if orgs == 1:
        return [total]
    weights = [5.0] + [rng.uniform(0.5, 1.5) for _ in range(orgs - 1)]
    scale = total / sum(weights)
    sizes = [max(1, int(w * scale)) for w in weights]
    sizes[1] += total - sum(sizes)
    return sizes


def pick(rng: random.Random, weights: dict[str, int]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


@contextmanager
def explicit_timestamps(*models: type) -> Iterator[None]:
    """Let bulk_create keep the generated created/updated times instead of 'now'."""
    saved = []
    for model in models:
        for f in model._meta.concrete_fields:
            if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
                saved.append((f, f.auto_now, f.auto_now_add))
                f.auto_now = f.auto_now_add = False
    try:
        yield
    finally:
        for f, auto_now, auto_now_add in saved:
            f.auto_now, f.auto_now_add = auto_now, auto_now_add


def seed(orgs: int, per_org: int, *, random_seed: int = 42, out: object = sys.stdout) -> Totals:
    """Seed a migrated, empty database; Django must be set up. Returns the row counts."""
    from django.contrib.auth.hashers import make_password
    from django.db import connection, transaction
    from django.utils import timezone

    from supportdesk.accounts.models import Application, Environment, Organization, Role, User
    from supportdesk.events.models import Event
    from supportdesk.tickets.models import Counter, Response, Ticket

    if Ticket.objects.exists() or User.objects.exists():
        raise SystemExit("seed: the database is not empty; use a fresh SUPPORTDESK_HOME.")
    rng = random.Random(random_seed)
    now = timezone.now().replace(microsecond=0)
    totals = Totals()
    started = time.monotonic()
    # One argon2 hash for everyone: hashing each of ~1,000 users would take minutes.
    password_hash = make_password(PASSWORD)

    def say(message: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {message}", file=out, flush=True)  # type: ignore[call-overload]

    sizes = organization_sizes(orgs, per_org, rng)
    with explicit_timestamps(Organization, User, Ticket, Response, Event), transaction.atomic():
        Organization.objects.bulk_create(
            Organization(
                id=i + 1,
                name=f"{COMPANY_WORDS[i % len(COMPANY_WORDS)]} {COMPANY_KINDS[i % len(COMPANY_KINDS)]} {i + 1:03d}",
                created_at=now - timedelta(days=DAYS_OF_HISTORY + 30),
            )
            for i in range(orgs)
        )
        users: list[User] = []
        agents: list[tuple[int, str]] = []
        for n in range(1, AGENTS + 1):
            name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
            users.append(
                User(
                    id=len(users) + 1,
                    email=f"agent{n}@support.example.com",
                    name=name,
                    role=Role.AGENT,
                    password=password_hash,
                    time_zone=rng.choice(TIME_ZONES),
                )
            )
            agents.append((len(users), name))
        users.append(
            User(
                id=len(users) + 1,
                email="admin@support.example.com",
                name="Admin",
                role=Role.ADMIN,
                password=password_hash,
            )
        )
        org_data: list[OrgData] = []
        applications: list[Application] = []
        environments: list[Environment] = []
        for i, size in enumerate(sizes):
            data = OrgData(org_id=i + 1, domain=f"org{i + 1}.example.com")
            for n in range(1, max(3, size // 100) + 1):
                name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
                users.append(
                    User(
                        id=len(users) + 1,
                        email=f"customer{n}@{data.domain}",
                        name=name,
                        role=Role.CUSTOMER,
                        organization_id=data.org_id,
                        password=password_hash,
                        time_zone=rng.choice(TIME_ZONES),
                    )
                )
                data.customers.append((len(users), name))
            for app_name in rng.sample(APP_NAMES, rng.randint(1, 4)):
                app_id = len(applications) + 1
                applications.append(
                    Application(id=app_id, organization_id=data.org_id, name=app_name)
                )
                env_ids, env_names = [], {}
                for env_name in ENV_NAMES[: rng.randint(1, 3)]:
                    env_id = len(environments) + 1
                    environments.append(
                        Environment(id=env_id, application_id=app_id, name=env_name)
                    )
                    env_ids.append(env_id)
                    env_names[env_id] = env_name
                data.apps.append((app_id, env_ids, env_names))
            org_data.append(data)
        for u in users:
            u.date_joined = now - timedelta(days=DAYS_OF_HISTORY + 1)
        User.objects.bulk_create(users, batch_size=500)
        Application.objects.bulk_create(applications)
        Environment.objects.bulk_create(environments)
    totals.organizations, totals.users = orgs, len(users)
    say(
        f"{orgs} organizations, {len(users)} users, {len(applications)} applications, "
        f"{len(environments)} environments"
    )

    # Numbers follow creation time across all organizations, as the counter hands them out.
    span = DAYS_OF_HISTORY * 86400
    births = sorted(
        (now - timedelta(seconds=rng.randrange(span)), org_index)
        for org_index, size in enumerate(sizes)
        for _ in range(size)
    )
    per_org_tickets: list[list[tuple[int, datetime]]] = [[] for _ in sizes]
    for offset, (created, org_index) in enumerate(births):
        per_org_tickets[org_index].append((FIRST_NUMBER + offset, created))
    del births

    generator = TicketGenerator(rng, now, agents)
    for index, data in enumerate(org_data):
        with explicit_timestamps(Ticket, Response, Event), transaction.atomic():
            generator.write_org(data, per_org_tickets[index], totals)
        per_org_tickets[index] = []
        if (index + 1) % 10 == 0 or index + 1 == len(org_data):
            say(
                f"{index + 1}/{len(org_data)} organizations: {totals.tickets} tickets, "
                f"{totals.responses} responses, {totals.events} events"
            )
    with transaction.atomic():
        Counter.objects.update_or_create(
            name="ticket", defaults={"value": FIRST_NUMBER + totals.tickets - 1}
        )
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    say("done")
    return totals


class TicketGenerator:
    """Builds one organization's tickets with their conversation and history."""

    def __init__(self, rng: random.Random, now: datetime, agents: list[tuple[int, str]]) -> None:
        from supportdesk.tickets.models import Priority, Tag, TicketType

        self.rng = rng
        self.now = now
        self.agents = agents
        self.types = {t.key: (t.pk, t.name) for t in TicketType.objects.all()}
        self.priorities = {p.key: (p.pk, p.name) for p in Priority.objects.all()}
        self.tag_ids = [t.pk for t in Tag.objects.all()]
        self.next_response_id = 1
        self.next_event_id = 1

    def _text(self, extra: str = "") -> str:
        lines = self.rng.sample(SENTENCES, self.rng.randint(2, 4))
        body = " ".join(lines)
        if self.rng.random() < 0.3:
            body += "\n\nSteps so far:\n\n- checked the logs\n- restarted the worker\n"
        if self.rng.random() < 0.2:
            body += "\n\n" + LOG_SNIPPET
        return body + extra

    def _title(self, type_key: str, data: OrgData) -> str:
        if type_key == "task":
            return self.rng.choice(TASKS)
        if type_key == "question":
            return self.rng.choice(QUESTIONS)
        app = self.rng.choice(APP_NAMES)
        title = f"{app} {self.rng.choice(SYMPTOMS)} on {self.rng.choice(ENV_NAMES)}"
        return f"Recurring: {title}" if type_key == "problem" else title

    def write_org(self, data: OrgData, numbers: list[tuple[int, datetime]], totals: Totals) -> None:
        from supportdesk.events.models import Event, EventKind, Via
        from supportdesk.tickets.models import Response, Status, Ticket, TicketCC

        rng, now = self.rng, self.now
        tickets, responses, events, ccs = [], [], [], []
        tag_links, env_links = [], []
        problems: list[int] = []
        status_labels = {s.value: s.label for s in Status}

        def event(
            ticket_id: int,
            kind: str,
            actor: int,
            at: datetime,
            version: int,
            changes: dict[str, list[object]],
            *,
            response_id: int | None = None,
            internal: bool = False,
        ) -> None:
            events.append(
                Event(
                    id=self.next_event_id,
                    ticket_id=ticket_id,
                    kind=kind,
                    actor_id=actor,
                    via=Via.EMAIL if rng.random() < 0.15 else Via.WEB,
                    response_id=response_id,
                    changes=changes,
                    version=version,
                    is_internal=internal,
                    created_at=at,
                )
            )
            self.next_event_id += 1

        for number, created in numbers:
            ticket_id = number - FIRST_NUMBER + 1
            type_key = pick(rng, TYPE_WEIGHTS)
            priority_key = pick(rng, PRIORITY_WEIGHTS)
            requester_id, _ = rng.choice(data.customers)
            age = now - created
            if age > timedelta(days=30):
                status = rng.choices(["closed", "resolved", "open", "pending"], [88, 8, 2, 2])[0]
            else:
                status = rng.choices(["open", "pending", "resolved", "closed"], [45, 25, 20, 10])[0]
            is_done = status in ("resolved", "closed")
            agent_id, agent_name = rng.choice(self.agents)
            assigned = rng.random() < (0.95 if is_done else 0.6)
            title = self._title(type_key, data)
            app_id = None
            if data.apps and rng.random() < 0.7:
                app_id, env_ids, _ = rng.choice(data.apps)
                chosen = rng.sample(env_ids, rng.randint(0, len(env_ids)))
                env_links.extend((ticket_id, env_id) for env_id in chosen)
            tag_count = rng.choices([0, 1, 2, 3], [30, 45, 20, 5])[0]
            tag_links.extend((ticket_id, tag_id) for tag_id in rng.sample(self.tag_ids, tag_count))
            if rng.random() < 0.1:
                ccs.append(TicketCC(ticket_id=ticket_id, email=f"ops@{data.domain}"))
            problem_id = None
            if type_key == "problem":
                problems.append(ticket_id)
            elif type_key == "incident" and problems and rng.random() < 0.1:
                problem_id = rng.choice(problems)

            version = 1
            event(
                ticket_id,
                EventKind.CREATED,
                requester_id,
                created,
                version,
                {
                    "type": [None, self.types[type_key][1]],
                    "priority": [None, self.priorities[priority_key][1]],
                    "title": [None, title],
                    "status": [None, "Open"],
                },
            )
            # The conversation: agent and customer take turns, with the odd internal note.
            at = created
            last_actor = requester_id
            limit = now - timedelta(minutes=1)
            for turn in range(rng.randint(1, 5)):
                at = min(at + timedelta(seconds=rng.randrange(300, 2 * 86400)), limit)
                agent_turn = turn % 2 == 0
                internal = agent_turn and rng.random() < 0.15
                author = agent_id if agent_turn else requester_id
                if agent_turn:
                    body = rng.choice(NOTES if internal else AGENT_REPLIES)
                else:
                    body = self._text(f"\n\n{rng.choice(CUSTOMER_REPLIES)}")
                responses.append(
                    Response(
                        id=self.next_response_id,
                        ticket_id=ticket_id,
                        author_id=author,
                        body=body,
                        is_internal=internal,
                        channel="email" if rng.random() < 0.2 else "web",
                        created_at=at,
                    )
                )
                if agent_turn and assigned and turn == 0:
                    version += 1
                    event(
                        ticket_id,
                        EventKind.ASSIGNED,
                        agent_id,
                        at,
                        version,
                        {"assignee": [None, agent_name]},
                    )
                event(
                    ticket_id,
                    EventKind.NOTE_ADDED if internal else EventKind.RESPONSE_ADDED,
                    author,
                    at,
                    version,
                    {},
                    response_id=self.next_response_id,
                    internal=internal,
                )
                self.next_response_id += 1
                last_actor = author
            closed_at = None
            if status != "open":
                at = min(at + timedelta(seconds=rng.randrange(60, 86400)), limit)
                version += 1
                event(
                    ticket_id,
                    EventKind.STATUS_CHANGED,
                    agent_id,
                    at,
                    version,
                    {"status": ["Open", status_labels[status]]},
                )
                last_actor = agent_id
                closed_at = at if status == "closed" else None
            tickets.append(
                Ticket(
                    id=ticket_id,
                    number=number,
                    type_id=self.types[type_key][0],
                    priority_id=self.priorities[priority_key][0],
                    title=title,
                    description=self._text(),
                    organization_id=data.org_id,
                    requester_id=requester_id,
                    application_id=app_id,
                    status=status,
                    created_by_id=requester_id,
                    last_updated_by_id=last_actor,
                    assignee_id=agent_id if assigned else None,
                    problem_id=problem_id,
                    channel=pick(rng, CHANNEL_WEIGHTS),
                    version=version,
                    created_at=created,
                    updated_at=at,
                    closed_at=closed_at,
                )
            )

        Ticket.objects.bulk_create(tickets, batch_size=1000)
        Response.objects.bulk_create(responses, batch_size=2000)
        Event.objects.bulk_create(events, batch_size=2000)
        TicketCC.objects.bulk_create(ccs, batch_size=2000)
        Ticket.tags.through.objects.bulk_create(
            [Ticket.tags.through(ticket_id=t, tag_id=g) for t, g in tag_links], batch_size=5000
        )
        Ticket.environments.through.objects.bulk_create(
            [Ticket.environments.through(ticket_id=t, environment_id=e) for t, e in env_links],
            batch_size=5000,
        )
        totals.tickets += len(tickets)
        totals.responses += len(responses)
        totals.events += len(events)
        totals.ccs += len(ccs)
        totals.tag_links += len(tag_links)
        totals.environment_links += len(env_links)


def main() -> None:
    """`python bench/seed.py --orgs N --tickets-per-org N` into the SUPPORTDESK_HOME database."""
    import argparse

    import django

    parser = argparse.ArgumentParser(description="Seed a migrated, empty supportdesk database.")
    parser.add_argument("--orgs", type=int, default=100)
    parser.add_argument("--tickets-per-org", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "supportdesk.settings")
    django.setup()
    totals = seed(args.orgs, args.tickets_per_org, random_seed=args.seed)
    print(f"seeded: {totals}")


if __name__ == "__main__":
    main()
