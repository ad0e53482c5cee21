"""Demo data for `supportdesk serve --demo`: invented organizations, people and tickets.

Everything is made through the services, so the demo obeys the same rules (and writes the
same history) as real use. Addresses use the reserved `.test` and `example.com` domains.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from django.db import transaction

from supportdesk.accounts import services as accounts
from supportdesk.accounts.models import Application, Environment, Organization, User
from supportdesk.events.models import Via
from supportdesk.tickets import services as tickets
from supportdesk.tickets.models import Status, Ticket

ADMIN_PASSWORD = "demo-admin-pass"  # noqa: S105  (printed on purpose: demo logins)
AGENT_PASSWORD = "demo-agent-pass"  # noqa: S105
CUSTOMER_PASSWORD = "demo-customer-pass"  # noqa: S105

STAFF = [
    ("admin@supportdesk.test", "Ada Admin", "admin", ADMIN_PASSWORD),
    ("maria@supportdesk.test", "Maria Santos", "agent", AGENT_PASSWORD),
    ("sam@supportdesk.test", "Sam Okafor", "agent", AGENT_PASSWORD),
]


@dataclass(frozen=True)
class DemoOrganization:
    name: str
    applications: dict[str, tuple[str, ...]]  # application name -> its environments
    customers: list[tuple[str, str]]  # (email, name)


ORGANIZATIONS = [
    DemoOrganization(
        "Northwind Hosting",
        {"Customer Portal": ("Production", "Staging"), "Billing API": ("Production",)},
        [("nora@northwind.test", "Nora Lindqvist"), ("oliver@northwind.test", "Oliver Brandt")],
    ),
    DemoOrganization(
        "Blue Harbor Media",
        {"Video Platform": ("Production", "Staging", "Development"), "Ad Server": ("Production",)},
        [("bianca@blueharbor.test", "Bianca Reyes"), ("ivan@blueharbor.test", "Ivan Petrov")],
    ),
    DemoOrganization(
        "Kestrel Analytics",
        {"Data Warehouse": ("Production", "Test")},
        [("kim@kestrel.test", "Kim Tanaka")],
    ),
]


@dataclass(frozen=True)
class DemoTicket:
    org: str
    type: str
    priority: str
    title: str
    description: str
    app: str | None = None
    envs: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    ccs: tuple[str, ...] = ()


# The problems come first so that incidents can link to them.
DEMO_TICKETS = [
    DemoTicket("Northwind Hosting", "problem", "high", "Connection pool runs dry during the nightly invoice run",
               "Every night around 02:00 UTC the **Billing API** stops handing out database "
               "connections for about ten minutes.\n\n- pool size: 20\n- invoice workers: 32",
               "Billing API", ("Production",), ("Bug",)),
    DemoTicket("Blue Harbor Media", "problem", "urgent", "Transcoding queue backs up after a storage failover",
               "After each failover of the object store the transcoding queue stops draining "
               "until the workers are restarted.", "Video Platform", ("Production",), ("Bug",)),
    DemoTicket("Northwind Hosting", "incident", "urgent", "Customer Portal answers 502 for every user",
               "Since 09:12 the portal shows *502 Bad Gateway* on every page.", "Customer Portal",
               ("Production",), ("Bug",), ("oncall@example.com",)),
    DemoTicket("Northwind Hosting", "incident", "high", "Invoice emails were not sent last night",
               "None of our customers got their invoice mail this morning.", "Billing API",
               ("Production",), ("Bug",)),
    DemoTicket("Northwind Hosting", "incident", "normal", "Billing API times out on large exports",
               "Exports with more than 50,000 lines time out after 30 seconds.", "Billing API",
               (), ("Bug",)),
    DemoTicket("Blue Harbor Media", "incident", "urgent", "Video uploads stuck at 99 %",
               "Uploads reach 99 % and then hang. Small files are fine; anything above 2 GB hangs.",
               "Video Platform", ("Production",), ("Bug",), ("producer@example.com",)),
    DemoTicket("Blue Harbor Media", "incident", "high", "Thumbnails missing after Tuesday's deploy",
               "New videos have a grey box instead of a thumbnail.", "Video Platform",
               ("Production", "Staging"), ("Bug",)),
    DemoTicket("Blue Harbor Media", "incident", "low", "Ad Server dashboard shows yesterday's numbers",
               "The dashboard lags one day behind; reports by mail are correct.", "Ad Server"),
    DemoTicket("Kestrel Analytics", "incident", "normal", "Nightly load job failed twice this week",
               "The `orders` load failed on Monday and Thursday with a disk-full error.",
               "Data Warehouse", ("Production",), ("Bug",)),
    DemoTicket("Northwind Hosting", "task", "normal", "Rotate the TLS certificate on staging",
               "The staging certificate expires at the end of the month.", "Customer Portal",
               ("Staging",), ("Installation",)),
    DemoTicket("Northwind Hosting", "task", "high", "Scale the portal web tier to four nodes",
               "We expect three times the usual traffic during the spring sale.",
               "Customer Portal", ("Production",), ("Installation",)),
    DemoTicket("Northwind Hosting", "task", "low", "Open port 5432 for the reporting replica",
               "Our reporting tool needs read access from 198.51.100.7.", "Billing API",
               ("Production",), ("Installation",)),
    DemoTicket("Blue Harbor Media", "task", "normal", "Add a development environment for the new player",
               "Please set up **Development** like Staging, with its own bucket.", "Video Platform",
               ("Development",), ("Installation", "Feature Request")),
    DemoTicket("Blue Harbor Media", "task", "urgent", "Raise the upload size limit to 4 GB today",
               "A partner delivers 4K masters this afternoon.", "Video Platform", ("Production",),
               ("Installation",)),
    DemoTicket("Kestrel Analytics", "task", "normal", "Create a read-only database user for auditors",
               "Auditors arrive on Monday and need read-only access for two weeks.",
               "Data Warehouse", ("Production",), ("Help Wanted",)),
    DemoTicket("Kestrel Analytics", "task", "low", "Upgrade the test warehouse to the new version",
               "No hurry; any evening next week is fine.", "Data Warehouse", ("Test",),
               ("Installation",)),
    DemoTicket("Northwind Hosting", "question", "normal", "How do we export last month's audit log?",
               "Our compliance team asks for a CSV of every admin action in March."),
    DemoTicket("Northwind Hosting", "question", "low", "Is there a maintenance window this quarter?",
               "We would like to plan our own release around it.", tags=("Question",)),
    DemoTicket("Northwind Hosting", "question", "high", "Can the Billing API send webhooks?",
               "We would rather not poll for new invoices.", "Billing API",
               tags=("Feature Request", "Question")),
    DemoTicket("Blue Harbor Media", "question", "normal", "Which regions hold copies of our videos?",
               "Legal asks where our data is stored.", tags=("Question",)),
    DemoTicket("Blue Harbor Media", "question", "low", "Can we get a second admin login?",
               "Our new operations lead needs access.", tags=("Help Wanted",)),
    DemoTicket("Kestrel Analytics", "question", "normal", "What does the 'stale' badge on a table mean?",
               "Some tables show a yellow badge since yesterday.", "Data Warehouse",
               tags=("Question",)),
    DemoTicket("Kestrel Analytics", "question", "urgent", "Is the Test environment affected by the outage?",
               "We see errors in Test too; should we stop our load tests?", "Data Warehouse",
               ("Test",), ("Question",)),
    DemoTicket("Blue Harbor Media", "incident", "normal", "Player stutters on Safari",
               "Playback stutters every few seconds on Safari 17; Chrome is fine.\n\n"
               "<script>alert('kept as typed, shown as text')</script>", "Video Platform",
               ("Production",), ("Bug",)),
    DemoTicket("Northwind Hosting", "incident", "low", "Typo on the portal's login page",
               "It says *pasword* under the login box.", "Customer Portal", ("Production",),
               ("Bug",)),
    DemoTicket("Kestrel Analytics", "incident", "high", "Dashboards time out after the schema change",
               "Since this morning's migration, every dashboard times out.", "Data Warehouse",
               ("Production",), ("Bug",), ("analyst@example.com",)),
    DemoTicket("Northwind Hosting", "task", "urgent", "Block traffic from a scraping address range",
               "203.0.113.0/24 is hammering the portal's search.", "Customer Portal",
               ("Production",), ("Help Wanted",)),
    DemoTicket("Blue Harbor Media", "question", "high", "Why did our bill double in March?",
               "Storage costs doubled without a change on our side.", tags=("Question",)),
    DemoTicket("Kestrel Analytics", "task", "high", "Restore yesterday's backup of the orders table",
               "Someone ran a DELETE without a WHERE. Please restore into `orders_restored`.",
               "Data Warehouse", ("Production",), ("Help Wanted",)),
    DemoTicket("Northwind Hosting", "question", "urgent", "Are we affected by the OpenSSL advisory?",
               "The advisory came out an hour ago; our security lead asks.", tags=("Question",)),
]  # fmt: skip

AGENT_ANSWERS = [
    "Thanks for the report, we are looking into it now.",
    "We found the cause and rolled out a fix. Could you check on your side?",
    "This is done. Let us know if anything looks wrong.",
    "Could you send us the exact time and one example?",
]
CUSTOMER_REPLIES = [
    "Thanks! It works again on our side.",
    "Here is an example: it happened at 14:05 UTC for order 4711.",
    "Still seeing it on Staging, though.",
]
INTERNAL_NOTES = [
    "Same root cause as last month's failover; see the runbook, step 4.",
    "Customer is on the premium plan: keep them posted every hour.",
    "Checked the logs: nothing on our side before 09:10.",
]
# Each status and each reply pattern appears many times over the list of tickets.
STATUSES = [Status.OPEN, Status.PENDING, Status.RESOLVED, Status.CLOSED, Status.OPEN]


def demo_logins() -> list[tuple[str, str, str]]:
    """(email, password, role) of every demo user: staff first, then customers."""
    logins = [(email, password, role) for email, _name, role, password in STAFF]
    for org in ORGANIZATIONS:
        logins += [(email, CUSTOMER_PASSWORD, "customer") for email, _name in org.customers]
    return logins


def seed_demo() -> list[tuple[str, str, str]]:
    """Fill an empty database with demo data and return the demo logins.

    A database with users or tickets is left alone: then the logins are returned only when the
    demo admin exists (seeded earlier), and an empty list means someone else's data is there.
    """
    if User.objects.exists() or Ticket.objects.exists():
        seeded = User.objects.filter(email__iexact=STAFF[0][0]).exists()
        return demo_logins() if seeded else []
    with transaction.atomic():
        _seed()
    return demo_logins()


def _seed() -> None:
    staff = {
        email: accounts.create_user(email=email, role=role, password=password, name=name)
        for email, name, role, password in STAFF
    }
    agents = [user for user in staff.values() if user.role == "agent"]
    customers: dict[str, list[User]] = {}
    for org in ORGANIZATIONS:
        organization = accounts.get_or_create_organization(org.name)
        _applications(organization, org.applications)
        customers[org.name] = [
            accounts.create_user(
                email=email, role="customer", password=CUSTOMER_PASSWORD,
                organization=organization, name=name,
            )
            for email, name in org.customers
        ]  # fmt: skip
    problems: dict[str, Ticket] = {}
    rotation = itertools.count()
    for index, spec in enumerate(DEMO_TICKETS):
        requester = customers[spec.org][index % len(customers[spec.org])]
        agent = agents[index % len(agents)]
        ticket = _open(spec, requester, agent, phone=index % 7 == 3)
        if spec.type == "problem":
            problems.setdefault(spec.org, ticket)
        _converse(ticket, spec, requester, agent, next(rotation))
        changes: dict[str, object] = {}
        if index % 4 != 0:
            changes["assignee"] = agent
        if spec.type == "incident" and spec.org in problems and index % 2 == 0:
            changes["problem"] = problems[spec.org].number
        status = STATUSES[index % len(STATUSES)]
        if status != Status.OPEN:
            changes["status"] = status
        if changes:
            tickets.update_ticket(ticket, acting_user=agent, via=Via.WEB, changes=changes)
        if index % 10 == 8 and status in (Status.RESOLVED, Status.CLOSED):
            tickets.reopen_ticket(ticket, acting_user=requester, via=Via.WEB)


def _applications(organization: Organization, applications: dict[str, tuple[str, ...]]) -> None:
    for app_name, environment_names in applications.items():
        application = accounts.create_application(organization, app_name)
        for environment_name in environment_names:
            accounts.create_environment(application, environment_name)


def _open(spec: DemoTicket, requester: User, agent: User, *, phone: bool) -> Ticket:
    """The requester opens it on the web, or an agent logs the customer's phone call."""
    application = (
        Application.objects.get(organization=requester.organization, name=spec.app)
        if spec.app
        else None
    )
    environments = (
        list(Environment.objects.filter(application=application, name__in=spec.envs))
        if application
        else []
    )
    return tickets.create_ticket(
        acting_user=agent if phone else requester,
        requester=requester if phone else None,
        via=Via.WEB,
        channel="phone" if phone else None,
        type=spec.type,
        priority=spec.priority,
        title=spec.title,
        description=spec.description,
        application=application,
        environments=environments,
        tags=list(spec.tags),
        ccs=list(spec.ccs),
    )


def _converse(ticket: Ticket, spec: DemoTicket, requester: User, agent: User, turn: int) -> None:
    """A public answer on every ticket; on some a customer reply and an internal note."""
    tickets.add_response(
        ticket, acting_user=agent, via=Via.WEB, body=AGENT_ANSWERS[turn % len(AGENT_ANSWERS)]
    )
    if turn % 3 == 0:
        tickets.add_response(
            ticket, acting_user=agent, via=Via.WEB, internal=True,
            body=INTERNAL_NOTES[turn % len(INTERNAL_NOTES)],
        )  # fmt: skip
    if turn % 2 == 1:
        tickets.add_response(
            ticket, acting_user=requester, via=Via.WEB,
            body=CUSTOMER_REPLIES[turn % len(CUSTOMER_REPLIES)],
        )  # fmt: skip
    if turn % 5 == 2:
        tickets.add_response(
            ticket, acting_user=agent, via=Via.WEB, channel="chat", on_behalf_of=requester,
            body=f"Chat transcript: {requester.display_name} asked for an update on {spec.title!r}.",
        )  # fmt: skip
