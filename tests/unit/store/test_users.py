"""msgsrv/store/users.py: the users file, hashed passwords."""

from __future__ import annotations

import stat

import pytest

from msgsrv.store.users import UserError, Users, check_password, hash_password


def test_added_user_verifies_and_password_is_not_stored_in_plain(root):
    users = Users(root)
    users.add("alice", "open sesame")
    assert users.verify("alice", "open sesame")
    assert not users.verify("alice", "open sesame!")
    text = root.users_file.read_text()
    assert "open sesame" not in text
    assert '"alice" = "scrypt$' in text
    assert stat.S_IMODE(root.users_file.stat().st_mode) == 0o600


def test_unknown_user_does_not_verify(root):
    assert not Users(root).verify("nobody", "x")


def test_list_remove_and_set_password(root):
    users = Users(root)
    users.add("bob", "1")
    users.add("alice", "2")
    assert users.list() == ["alice", "bob"]
    users.set_password("bob", "3")
    assert users.verify("bob", "3") and not users.verify("bob", "1")
    users.remove("bob")
    assert users.list() == ["alice"]


def test_duplicate_unknown_and_invalid_names_are_refused(root):
    users = Users(root)
    users.add("alice", "x")
    with pytest.raises(UserError, match="already exists"):
        users.add("alice", "y")
    with pytest.raises(UserError, match="unknown user"):
        users.remove("bob")
    with pytest.raises(UserError, match="invalid user name"):
        users.add("../x", "y")


def test_same_password_gets_a_different_salt():
    a, b = hash_password("pw"), hash_password("pw")
    assert a != b
    assert check_password("pw", a) and check_password("pw", b)


@pytest.mark.parametrize("stored", ["", "plain", "scrypt$x$8$1$AA==$AA==", "md5$1$2$3$4$5"])
def test_malformed_stored_values_never_match(stored):
    assert not check_password("pw", stored)
