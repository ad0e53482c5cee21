from django.conf import settings

from tests.factories import make_ticket


def test_tests_run_with_fast_hashing_in_a_temporary_home(bob):
    assert settings.TESTING
    assert "supportdesk-test-" in str(settings.HOME)
    ticket = make_ticket(requester=bob)
    assert ticket.number >= 1000
