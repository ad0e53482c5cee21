"""The Django admin for users: passwords set, never shown; deactivation ends sessions."""

from django.test import Client

from supportdesk.accounts.models import User
from tests.factories import PASSWORD


def admin_client(dave) -> Client:
    client = Client()
    client.force_login(dave)
    return client


def test_an_admin_creates_a_customer_with_a_password_that_logs_in(dave, acme):
    response = admin_client(dave).post("/admin/accounts/user/add/", {
        "email": "new@acme.test", "name": "New", "role": "customer", "organization": acme.pk,
        "time_zone": "UTC", "is_active": "on", "new_password": "a long new passphrase",
    })  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    user = User.objects.get(email="new@acme.test")
    assert user.check_password("a long new passphrase")
    assert "a long new passphrase" not in user.password
    assert Client().login(email="new@acme.test", password="a long new passphrase")


def test_a_customer_without_an_organization_is_a_form_error_not_a_crash(dave):
    response = admin_client(dave).post("/admin/accounts/user/add/", {
        "email": "loose@acme.test", "role": "customer", "time_zone": "UTC", "is_active": "on",
    })  # fmt: skip
    assert response.status_code == 200
    assert not User.objects.filter(email="loose@acme.test").exists()


def test_the_stored_hash_is_never_shown_and_an_empty_password_keeps_it(dave, bob):
    client = admin_client(dave)
    page = client.get(f"/admin/accounts/user/{bob.pk}/change/").content.decode()
    assert bob.password not in page
    response = client.post(f"/admin/accounts/user/{bob.pk}/change/", {
        "email": bob.email, "name": "Bob Renamed", "role": "customer",
        "organization": bob.organization_id, "time_zone": "UTC", "is_active": "on",
        "new_password": "",
    })  # fmt: skip
    assert response.status_code == 302
    bob.refresh_from_db()
    assert bob.name == "Bob Renamed"
    assert bob.check_password(PASSWORD)


def test_deactivating_in_the_admin_ends_the_users_session(dave, bob):
    bobs = Client()
    bobs.force_login(bob)
    assert bobs.get("/tickets/").status_code == 200
    admin_client(dave).post(f"/admin/accounts/user/{bob.pk}/change/", {
        "email": bob.email, "name": bob.name, "role": "customer",
        "organization": bob.organization_id, "time_zone": "UTC", "new_password": "",
    })  # fmt: skip
    bob.refresh_from_db()
    assert not bob.is_active
    assert bobs.get("/tickets/").status_code == 302
