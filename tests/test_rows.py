"""The hand-written statements give exactly what the ORM gives, on SQLite and PostgreSQL."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from supportdesk import rows
from supportdesk.accounts.models import ApiToken, User
from supportdesk.accounts.services import authenticate_token, create_token, find_user
from supportdesk.errors import NotFound
from supportdesk.events.models import Event, EventKind, Via
from supportdesk.tickets.models import Ticket
from tests.factories import make_ticket


def field_values(instance):
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


@pytest.mark.django_db
def test_build_loads_an_instance_equal_to_the_orms(bob):
    bob.last_login = timezone.now()
    bob.save()
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {rows.columns(User, 'u')} FROM accounts_user u WHERE u.id = %s",  # noqa: S608
            [bob.pk],
        )
        built = rows.build(User, cursor.fetchone())
    loaded = User.objects.get(pk=bob.pk)
    assert field_values(built) == field_values(loaded)
    assert built.is_active is True  # a bool, not SQLite's 1
    assert timezone.is_aware(built.date_joined)
    assert timezone.is_aware(built.last_login)
    assert built._state.adding is False


@pytest.mark.django_db
def test_insert_sets_defaults_auto_now_and_the_id_like_save(bob):
    ticket = make_ticket(requester=bob)
    before = timezone.now()
    event = Event(ticket=ticket, kind=EventKind.UPDATED, actor=bob, via=Via.API, version=2)
    event.changes = {"title": ["old", "new ✓"]}
    rows.insert(event)
    assert event.pk is not None
    assert event._state.adding is False
    stored = Event.objects.get(pk=event.pk)
    assert field_values(stored) == field_values(event)
    assert stored.changes == {"title": ["old", "new ✓"]}  # JSON kept as JSON
    assert stored.created_at >= before  # auto_now_add filled in
    assert stored.is_internal is False  # the model's default


@pytest.mark.django_db
def test_insert_is_one_statement(bob):
    ticket = make_ticket(requester=bob)
    copy = Ticket(
        number=ticket.number + 1,
        type=ticket.type,
        priority=ticket.priority,
        title="copy",
        organization=ticket.organization,
        requester=bob,
        created_by=bob,
        last_updated_by=bob,
    )
    with CaptureQueriesContext(connection) as queries:
        rows.insert(copy)
    assert len(queries) == 1
    assert Ticket.objects.get(pk=copy.pk).title == "copy"
    assert copy.version == 1
    assert copy.status == "open"


@pytest.mark.django_db
def test_insert_many_gives_each_instance_its_own_row_and_id_in_chunks(bob, monkeypatch):
    monkeypatch.setattr(rows, "INSERT_ROWS_MAX", 2)
    ticket = make_ticket(requester=bob)
    events = [
        Event(ticket=ticket, kind=EventKind.UPDATED, actor=bob, via=Via.API, version=n,
              changes={"title": [str(n), f"new {n} ✓"]})
        for n in range(5)
    ]  # fmt: skip
    with CaptureQueriesContext(connection) as queries:
        rows.insert_many(events)
    assert len(queries) == 3  # 2 + 2 + 1 rows
    assert all(event._state.adding is False for event in events)
    for n, event in enumerate(events):
        stored = Event.objects.get(pk=event.pk)
        assert field_values(stored) == field_values(event)
        assert (stored.version, stored.changes) == (n, {"title": [str(n), f"new {n} ✓"]})
    assert sorted(event.pk for event in events) == [event.pk for event in events]


@pytest.mark.django_db
def test_insert_many_of_nothing_runs_nothing_and_of_two_models_refuses(bob):
    with CaptureQueriesContext(connection) as queries:
        rows.insert_many([])
    assert len(queries) == 0
    ticket = make_ticket(requester=bob)
    mixed = [Event(ticket=ticket, kind=EventKind.UPDATED, via=Via.API, version=1), ticket]
    with pytest.raises(TypeError, match="one model"):
        rows.insert_many(mixed)


@pytest.mark.django_db
def test_find_user_ignores_case_and_loads_the_organization(bob):
    found = find_user(bob.email.upper())
    assert found.pk == bob.pk
    with CaptureQueriesContext(connection) as queries:
        assert found.organization.name == bob.organization.name
    assert len(queries) == 0
    with pytest.raises(NotFound):
        find_user("nobody@example.com")


@pytest.mark.django_db
def test_a_token_loads_its_user_and_organization_in_one_query(bob):
    _, secret = create_token(bob, name="ci")
    with CaptureQueriesContext(connection) as queries:
        token = authenticate_token(secret)
        assert token is not None
        assert token.user.pk == bob.pk
        assert token.user.organization.pk == bob.organization_id
    assert len(queries) == 1
    token.expires_at = timezone.now() - timedelta(seconds=1)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=token.expires_at)
    assert authenticate_token(secret) is None  # the converted time compares with now


@pytest.mark.django_db(transaction=True)
def test_fetch_one_turns_driver_errors_into_djangos(bob):
    from django.db import IntegrityError

    duplicate = 'INSERT INTO accounts_user ("email") VALUES (%s)'
    with pytest.raises(IntegrityError):  # Django's, which the services catch
        rows.fetch_one(duplicate, [bob.email])


@pytest.mark.django_db(transaction=True)
def test_fetch_one_refuses_to_run_in_a_broken_transaction():
    from django.db import DatabaseError, transaction
    from django.db.transaction import TransactionManagementError

    with transaction.atomic():
        try:
            with transaction.atomic(savepoint=False), connection.cursor() as cursor:
                cursor.execute("SELECT * FROM no_such_table")
        except DatabaseError:
            pass  # the transaction must now be rolled back, and Django knows it
        with pytest.raises(TransactionManagementError):
            rows.fetch_one("SELECT %s", [1])


@pytest.mark.django_db
def test_fetch_one_is_seen_by_query_logging_and_execute_wrappers():
    with CaptureQueriesContext(connection) as captured:
        assert rows.fetch_one("SELECT %s, '100%%'", [7]) == (7, "100%")
    assert [q["sql"] for q in captured.captured_queries] == ["SELECT 7, '100%'"]
    seen = []

    def wrapper(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper):
        assert rows.fetch_one("SELECT %s", [8]) == (8,)
    assert seen == ["SELECT %s"]
    assert rows.fetch_one("SELECT %s, '100%%'", [9]) == (9, "100%")  # the driver's own path


@pytest.mark.django_db
def test_update_writes_the_named_fields_sets_auto_now_and_respects_its_fence(bob):
    ticket = make_ticket(requester=bob)
    before = Ticket.objects.get(pk=ticket.pk)
    ticket.title, ticket.description = "Renamed", "not written"
    with CaptureQueriesContext(connection) as queries:
        changed = rows.update(ticket, ["title", "updated_at"], where={"version": ticket.version})
    assert (changed, len(queries)) == (1, 1)
    after = Ticket.objects.get(pk=ticket.pk)
    assert after.title == "Renamed"
    assert after.description == before.description  # a field not named is left alone
    assert after.updated_at > before.updated_at  # auto_now, as save(update_fields=...) sets it

    ticket.title = "Stale write"
    assert rows.update(ticket, ["title"], where={"version": ticket.version + 1}) == 0
    assert Ticket.objects.get(pk=ticket.pk).title == "Renamed"


@pytest.mark.django_db
def test_update_refuses_a_name_that_is_not_a_column(bob):
    ticket = make_ticket(requester=bob)
    with pytest.raises(ValueError, match="not a column"):
        rows.update(ticket, ["ccs"])


@pytest.mark.django_db
def test_build_joined_gives_none_for_an_outer_join_that_found_nothing(bob, alice):
    assigned = make_ticket(requester=bob, title="assigned")
    Ticket.objects.filter(pk=assigned.pk).update(assignee=alice)
    unassigned = make_ticket(requester=bob, title="unassigned")
    found = rows.fetch_all(
        f"SELECT {rows.columns(Ticket, 't')}, {rows.columns(User, 'u')}"  # noqa: S608
        f" FROM {rows.table(Ticket)} t LEFT JOIN {rows.table(User)} u ON u.id = t.assignee_id"
        " WHERE t.id IN (%s, %s) ORDER BY t.id",
        [assigned.pk, unassigned.pk],
    )
    (first, agent), (second, nobody) = (rows.build_joined(row, Ticket, User) for row in found)
    assert (first.pk, second.pk) == (assigned.pk, unassigned.pk)
    assert field_values(agent) == field_values(User.objects.get(pk=alice.pk))
    assert nobody is None


@pytest.mark.django_db
def test_execute_returns_the_rows_it_changed(bob):
    ticket = make_ticket(requester=bob)
    sql = f"UPDATE {rows.table(Ticket)} SET title = %s WHERE id = %s"  # noqa: S608
    assert rows.execute(sql, ["Via execute", ticket.pk]) == 1
    assert rows.execute(sql, ["Nobody", ticket.pk + 1000]) == 0
    assert Ticket.objects.get(pk=ticket.pk).title == "Via execute"
