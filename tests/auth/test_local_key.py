"""Tokens of liaison's own signing key: verified with the key's public half (built once per
key), and refused once the key is replaced."""

from __future__ import annotations

import pytest

from adapter.auth import issue_token
from adapter.auth.keys import key_path, local_public_key
from adapter.auth.tokens import verify_token
from adapter.errors import Unauthorized


def test_a_token_of_the_local_key_is_verified_many_times_with_one_public_key() -> None:
    token = issue_token("hospital", organization="1750803447")
    first = local_public_key()
    for _ in range(3):
        assert verify_token(token).organization == "1750803447"
    assert local_public_key() is first


def test_a_token_signed_by_a_replaced_key_is_refused_and_new_ones_are_accepted() -> None:
    old = issue_token("hospital", organization="1750803447")
    assert verify_token(old).kind == "hospital"
    key_path().unlink()  # the operator replaces the key: a new one is made on first use
    new = issue_token("hospital", organization="1750803447")
    with pytest.raises(Unauthorized):
        verify_token(old)
    assert verify_token(new).kind == "hospital"


def test_a_token_accepted_before_is_refused_once_it_has_expired(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A signature once checked is remembered; the token's expiry is checked at every use."""
    import time

    token = issue_token("professional", idnat="801984758437")
    assert verify_token(token).kind == "professional"
    later = time.time() + 2 * 24 * 3600
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(Unauthorized):
        verify_token(token)
