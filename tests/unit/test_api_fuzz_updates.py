"""The API fuzz for updates (PATCH, and PUT where no PATCH): see test_api_fuzz.py."""

import pytest

from tests.unit.test_api_fuzz import fuzz

pytestmark = pytest.mark.django_db


def test_no_update_causes_a_server_error(admin_user):
    fuzz(admin_user, ("patch", "put"))
