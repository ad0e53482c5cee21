"""Users and organizations: email is the login in any case, customers belong to one org."""

from __future__ import annotations

import pytest
from django.contrib.auth import authenticate
from django.db import IntegrityError, transaction

from supportdesk.accounts import services
from supportdesk.accounts.models import Organization, User
from supportdesk.errors import InvalidChange, NotFound
from tests.factories import PASSWORD, make_user


def test_an_email_is_unique_regardless_of_case(bob):
    with pytest.raises(InvalidChange) as refused:
        make_user("BOB@Acme.TEST", org=bob.organization)
    assert refused.value.field == "email"
    assert User.objects.filter(email__iexact="bob@acme.test").count() == 1


def test_the_database_refuses_the_same_email_in_another_case(bob):
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(email="Bob@acme.test", organization=bob.organization)


def test_a_customer_requires_an_organization(db):
    with pytest.raises(InvalidChange) as refused:
        services.create_user(email="x@example.test", role="customer", password=PASSWORD)
    assert refused.value.field == "org"
    assert not User.objects.exists()


def test_the_database_refuses_a_customer_without_an_organization(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create(email="x@example.test", role="customer")


@pytest.mark.parametrize("role", ["agent", "admin"])
def test_agents_and_admins_need_no_organization(role, db):
    user = services.create_user(email=f"{role}@example.test", role=role, password=PASSWORD)
    assert user.organization is None
    assert user.is_agent


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"role": "owner"}, "role"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"email": "not-an-address"}, "email"),
        ({"email": "nul\x00@example.test"}, "email"),
        ({"name": "Bob\x00"}, "name"),
        ({"name": "B" * 201}, "name"),
        ({"name": "Bob \ud800"}, "name"),
    ],
)
def test_bad_user_input_is_refused_naming_the_field(fields, field, acme):
    values = {
        "email": "new@acme.test",
        "role": "customer",
        "password": PASSWORD,
        "organization": acme,
        **fields,
    }
    with pytest.raises(InvalidChange) as refused:
        services.create_user(**values)
    assert refused.value.field == field
    assert not User.objects.exists()


def test_an_organization_is_found_regardless_of_case(acme):
    assert services.get_or_create_organization("  ACME ") == acme
    assert Organization.objects.count() == 1


@pytest.mark.parametrize("name", ["", "   ", "Acme\x00", "A" * 201])
def test_a_bad_organization_name_is_refused(name, db):
    with pytest.raises(InvalidChange) as refused:
        services.get_or_create_organization(name)
    assert refused.value.field == "org"
    assert not Organization.objects.exists()


def test_a_user_logs_in_with_the_email_in_any_case(bob):
    assert authenticate(username="BOB@ACME.test", password=PASSWORD) == bob
    assert authenticate(username="bob@acme.test", password="wrong") is None


def test_a_login_with_a_nul_byte_is_refused_quietly(bob):
    assert authenticate(username="bob@acme.test\x00", password=PASSWORD) is None


def test_a_deactivated_user_cannot_log_in(bob):
    services.deactivate_user(bob)
    assert authenticate(username="bob@acme.test", password=PASSWORD) is None


def test_find_user_ignores_case_and_names_the_field_when_missing(bob):
    assert services.find_user(" Bob@ACME.test ") == bob
    for email in ["nobody@acme.test", "bob\x00@acme.test"]:
        with pytest.raises(NotFound) as missing:
            services.find_user(email)
        assert missing.value.field == "email"


def test_only_admins_reach_the_django_admin(alice, bob, dave):
    assert dave.is_staff
    assert dave.has_perm("tickets.delete_tag")
    assert not alice.is_staff
    assert not bob.has_perm("tickets.delete_tag")
