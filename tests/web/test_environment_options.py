from __future__ import annotations

from tests.factories import make_app


def options(client, **params) -> str:
    response = client.get("/tickets/environments/", params)
    assert response.status_code == 200
    return response.content.decode()


def test_a_customer_gets_the_environments_of_their_own_application(as_bob, shop):
    html = options(as_bob, application=shop.pk)
    assert ">Production</option>" in html
    assert ">Staging</option>" in html


def test_another_organizations_or_an_unknown_application_gives_no_options(as_bob, globex):
    foreign = make_app(globex, "Intranet", environments=("Secret",))
    assert "<option" not in options(as_bob, application=foreign.pk)
    assert "<option" not in options(as_bob, application=999999)
    assert "<option" not in options(as_bob, application="abc")
    assert "<option" not in options(as_bob)


def test_an_agent_gets_options_for_the_named_requesters_application_only(
    as_alice, bob, shop, carol
):
    # Before a requester is named the application alone decides: agents see every org.
    assert "Production" in options(as_alice, application=shop.pk)
    assert "Production" in options(as_alice, application=shop.pk, requester=bob.email)
    assert "<option" not in options(as_alice, application=shop.pk, requester=carol.email)


def test_chosen_environments_stay_selected(as_bob, shop):
    staging = shop.environments.get(name="Staging")
    html = options(as_bob, application=shop.pk, environments=staging.pk)
    assert f'<option value="{staging.pk}" selected>Staging</option>' in html


def test_anonymous_visitors_get_no_options(client, shop):
    assert client.get("/tickets/environments/", {"application": shop.pk}).status_code == 302
