"""API users on SQLite and PostgreSQL: tokens are shown once and stored only as hashes, roles are
ordered, revocation and rotation take effect at once, and every change is audited."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from app import auth
from summarize.approval import Roles
from warroom import audit
from warroom.errors import Conflict, InputError
from warroom.statedb import StateDB, connect, migrate


@pytest.fixture
def db(state_dsn: str) -> Iterator[StateDB]:
    opened = connect(state_dsn)
    migrate(opened, [audit.METADATA, auth.METADATA])
    yield opened
    opened.dispose()


def test_token_is_returned_once_and_stored_as_a_hash(db: StateDB) -> None:
    token = auth.add_user(db, "alice", "approver", actor="root")
    assert token.startswith(auth.TOKEN_PREFIX) and len(token) > 40
    with db.begin() as conn:
        row = conn.execute(sa.select(auth.USERS)).one()
    assert token not in [str(v) for v in row]  # no column holds the token itself
    assert row.token_sha256 == hashlib.sha256(token.encode()).hexdigest() and row.token_hint == token[:8]
    user = auth.authenticate(db, token)
    assert user is not None and (user.name, user.role, user.revoked) == ("alice", "approver", False)
    assert auth.get_user(db, "alice").to_json()["token_hint"] == token[:8]
    assert auth.add_user(db, "bob", "viewer", actor="root") != token


@pytest.mark.parametrize("token", ["", "wr_", "wr_unknown", "not-a-token", "wr_" + "x" * 200, "wr_'; --"])
def test_unknown_tokens_do_not_authenticate(db: StateDB, token: str) -> None:
    auth.add_user(db, "alice", "admin", actor="root")
    assert auth.authenticate(db, token) is None


def test_revoke_and_rotate_take_effect_at_once(db: StateDB) -> None:
    old = auth.add_user(db, "alice", "responder", actor="root")
    auth.revoke(db, "alice", actor="root")
    assert auth.authenticate(db, old) is None and auth.get_user(db, "alice").revoked
    new = auth.rotate(db, "alice", actor="root", role="approver")
    assert auth.authenticate(db, old) is None
    user = auth.authenticate(db, new)
    assert user is not None and user.role == "approver" and not user.revoked
    trail = [(e.actor, e.action, e.subject) for e in audit.entries(db)]
    assert trail == [
        ("root", "user.add", "user:alice"),
        ("root", "user.revoke", "user:alice"),
        ("root", "user.token", "user:alice"),
    ]
    assert audit.verify(db).ok


def test_bad_names_roles_and_duplicates_are_refused(db: StateDB) -> None:
    auth.add_user(db, "alice", "viewer", actor="root")
    with pytest.raises(Conflict, match="exists"):
        auth.add_user(db, "alice", "admin", actor="root")
    for name in ("", "a b", "x" * 65, "-dash", "semi;colon", "slash/name"):
        with pytest.raises(InputError) as caught:
            auth.add_user(db, name, "viewer", actor="root")
        assert caught.value.reason == "invalid_name"
    with pytest.raises(InputError) as role:
        auth.add_user(db, "bob", "root", actor="root")
    assert role.value.reason == "invalid_role"
    for call in (auth.revoke, auth.rotate, auth.get_user):
        with pytest.raises(InputError) as missing:
            call(db, "nobody", "root") if call is not auth.get_user else call(db, "nobody")
        assert missing.value.reason == "unknown_user"
    assert [u.name for u in auth.users(db)] == ["alice"]


def test_roles_are_ordered_and_feed_the_approval_workflow(db: StateDB) -> None:
    for low, high in zip(auth.ROLES, auth.ROLES[1:], strict=False):
        assert auth.allows(high, low) and not auth.allows(low, high)
    for role in auth.ROLES:
        auth.add_user(db, role, role, actor="root")
    auth.add_user(db, "gone", "admin", actor="root")
    auth.revoke(db, "gone", actor="root")
    roles = auth.approval_roles(db, Roles(frozenset({"from-config"}), frozenset()))
    assert roles.approvers == {"from-config", "approver", "admin"}
    assert roles.operators == {"responder", "approver", "admin"}
    revoked = auth.User("gone", "admin", revoked=True)
    assert not revoked.allows("viewer") and auth.User("v", "viewer").allows("viewer")
