"""Account names: chosen once from the email, unique, valid everywhere they are used."""

import pytest
from django.core.exceptions import ValidationError

from accounts.models import User
from accounts.naming import (
    ACCOUNT_NAME,
    choose_account_name,
    stem_from_email,
    validate_account_name,
)

pytestmark = pytest.mark.django_db


def test_name_comes_from_the_email_and_is_unique():
    a = User.objects.create_user("Jane.Doe@example.com", "pw-123456789")
    b = User.objects.create_user("jane.doe@example.org", "pw-123456789")
    c = User.objects.create_user("janedoe@example.net", "pw-123456789")
    assert a.account_name == "janedoe"
    assert b.account_name == "janedoe2"
    assert c.account_name == "janedoe3"


def test_name_never_changes_with_the_email():
    user = User.objects.create_user("first@example.com", "pw-123456789")
    user.email = "second@example.com"
    user.save()
    user.refresh_from_db()
    assert user.account_name == "first"


@pytest.mark.parametrize(
    "email",
    ["1@example.com", "a@example.com", "..--@example.com", "ÄÖÜ@example.com", "x" * 60 + "@e.com"],
)
def test_awkward_emails_still_give_valid_names(email):
    name = choose_account_name(email, lambda _: False)
    assert ACCOUNT_NAME.fullmatch(name), name
    assert stem_from_email(email)[0].isalpha()


@pytest.mark.parametrize("bad", ["", "ab", "Root", "a;b", "1abc", "a" * 13, "a-b", "a b"])
def test_validator_refuses_what_no_server_accepts(bad):
    with pytest.raises(ValidationError):
        validate_account_name(bad)
