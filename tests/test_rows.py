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
