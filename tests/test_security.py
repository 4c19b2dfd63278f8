"""Logins without a server: password hashes, the users-file rule, permissions, throttling, the user CLI."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from pathlib import Path

import pytest

from app.security import (
    AUTH_ENV,
    LOCKOUT_S,
    MAX_FAILURES,
    AuthError,
    LoginGuard,
    PasswordHash,
    Throttle,
    Users,
    check_name,
    live_users,
    load_users,
    read_users_file,
)
from app.ui.server import SessionClock, allowed_host_names, host_name
from app.ui.state import AppState, ServeOptions
from app.users_cli import write_users
from tests.conftest import JMEDLLM, REPO_ROOT
from tests.scripted_engine import ScriptedEngine

PASSWORD = "correct horse battery"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def users() -> Users:
    return Users({}).with_account("alice", PASSWORD, admin=True).with_account("bob", "bob's password ", admin=False)


def test_hash_round_trip_and_wrong_password() -> None:
    first, second = PasswordHash.create(PASSWORD), PasswordHash.create(PASSWORD)
    assert first.salt != second.salt and first.key != second.key
    assert first.record.startswith("scrypt$16384$8$1$")
    parsed = PasswordHash.parse(first.record)
    assert parsed.matches(PASSWORD)
    assert not parsed.matches(PASSWORD + "x")
    assert not parsed.matches("")


def test_users_file_lines_round_trip_with_comments_and_admin_flag(users: Users) -> None:
    text = "# staff\n\n" + users.text()
    parsed = Users.parse(text, "f")
    assert {account.name for account in parsed} == {"alice", "bob"}
    assert parsed.admins == frozenset({"alice"})
    assert parsed.is_admin("alice") and not parsed.is_admin("bob") and not parsed.is_admin("nobody")
    assert parsed.verify("alice", PASSWORD)
    assert not parsed.verify("alice", "wrong password")
    assert not parsed.verify("nobody", PASSWORD)
    assert "correct" not in text and "scrypt$" in text


def test_passwords_are_never_stripped(users: Users) -> None:
    assert users.verify("bob", "bob's password ")
    assert not users.verify("bob", "bob's password")


def test_plain_text_passwords_are_refused_with_the_conversion_command() -> None:
    with pytest.raises(AuthError, match="plain-text passwords.*jmedllm user add alice"):
        Users.parse("alice:secret\n", "f")
    # The old comma rule is gone: this is one (refused) line, never two accounts.
    with pytest.raises(AuthError, match="line 1: plain-text"):
        Users.parse("alice:Str0ng,Pass:word", "$JMEDLLM_AUTH")


def test_malformed_lines_are_refused(users: Users) -> None:
    line = users.text().splitlines()[0]
    with pytest.raises(AuthError, match="unknown flag"):
        Users.parse(line.removesuffix(":admin") + ":root", "f")
    with pytest.raises(AuthError, match="listed twice"):
        Users.parse(f"{line}\n{line}\n", "f")
    with pytest.raises(AuthError, match="malformed password hash"):
        Users.parse("carol:scrypt$16384$8$1$!!$!!", "f")
    for bad in ("a:b", "two words", "#hash", "", "x" * 65, "evil\x1b[31mred", "bell\x07", "caf\udce9"):
        with pytest.raises(AuthError, match="Invalid user name"):
            check_name(bad)
    assert check_name("田中太郎") == "田中太郎"


def test_users_file_must_be_private(tmp_path: Path, users: Users) -> None:
    path = tmp_path / "users.txt"
    path.write_text(users.text())
    path.chmod(0o644)
    with pytest.raises(AuthError, match=f"readable or writable by other users.*chmod 600 {path}"):
        read_users_file(path)
    path.chmod(0o620)
    with pytest.raises(AuthError, match="chmod 600"):
        load_users(path)
    path.chmod(0o600)
    loaded = load_users(path)
    assert loaded is not None and loaded.verify("alice", PASSWORD)


def test_environment_holds_the_same_lines(monkeypatch: pytest.MonkeyPatch, users: Users) -> None:
    monkeypatch.delenv(AUTH_ENV, raising=False)
    assert load_users(None) is None
    monkeypatch.setenv(AUTH_ENV, users.text())
    loaded = load_users(None)
    assert loaded is not None and loaded.admins == frozenset({"alice"}) and loaded.verify("bob", "bob's password ")
    monkeypatch.setenv(AUTH_ENV, "# nobody\n")
    with pytest.raises(AuthError, match="holds no account"):
        load_users(None)


def test_serve_uses_the_default_users_file_when_it_exists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JMEDLLM_DATA_DIR", str(tmp_path))
    monkeypatch.delenv(AUTH_ENV, raising=False)
    assert load_users(None) is None
    assert run_user("add", "carol", "--password-stdin", password=PASSWORD + "\n").returncode == 0
    assert stat.S_IMODE((tmp_path / "users.txt").stat().st_mode) == 0o600
    loaded = load_users(None)
    assert loaded is not None and loaded.verify("carol", PASSWORD)
    monkeypatch.setenv(AUTH_ENV, Users({}).with_account("dave", PASSWORD, admin=False).text())
    from_env = load_users(None)
    assert from_env is not None and "dave" in from_env and "carol" not in from_env


def test_throttle_locks_after_max_failures_within_the_window_and_unlocks_later() -> None:
    clock = FakeClock()
    throttle = Throttle(clock=clock)
    for _ in range(MAX_FAILURES - 1):
        assert throttle.fail("user:alice") == []
        clock.now += 60
    assert not throttle.locked("user:alice")
    assert throttle.fail("user:alice") == ["user:alice"]
    assert throttle.locked("user:alice") and throttle.locked("address:x", "user:alice")
    assert not throttle.locked("user:bob")
    clock.now += 60
    assert throttle.seconds_locked("address:x", "user:alice") == LOCKOUT_S - 60
    assert throttle.seconds_locked("user:bob") == 0
    clock.now += LOCKOUT_S
    assert not throttle.locked("user:alice") and throttle.seconds_locked("user:alice") == 0


def test_throttle_forgets_failures_older_than_the_window() -> None:
    clock = FakeClock()
    throttle = Throttle(clock=clock)
    for _ in range(MAX_FAILURES * 2):
        throttle.fail("user:alice")
        clock.now += throttle.window_s / (MAX_FAILURES - 1) + 1
    assert not throttle.locked("user:alice")


def test_login_guard_locks_out_the_user_and_the_address(users: Users, caplog: pytest.LogCaptureFixture) -> None:
    guard = LoginGuard(users, Throttle(clock=FakeClock()))
    caplog.set_level(logging.INFO, logger="app.security")
    for _ in range(MAX_FAILURES):
        assert not guard.check("alice", "wrong password!", "10.0.0.1")
    assert not guard.check("alice", PASSWORD, "10.0.0.2")  # the user is locked, from any address
    assert not guard.check("bob", "bob's password ", "10.0.0.1")  # the address is locked, for any user
    assert guard.check("bob", "bob's password ", "10.0.0.3")
    assert "locked out" in caplog.text and "10.0.0.1" in caplog.text and "'alice'" in caplog.text
    assert "wrong password!" not in caplog.text and PASSWORD not in caplog.text


def test_a_successful_login_clears_the_users_failures(users: Users) -> None:
    guard = LoginGuard(users, Throttle(clock=FakeClock()))
    for number in range(MAX_FAILURES - 1):
        guard.check("alice", "nope", f"10.0.1.{number}")
    assert guard.check("alice", PASSWORD, "10.0.2.1")
    assert not guard.check("alice", "nope", "10.0.2.2")
    assert guard.check("alice", PASSWORD, "10.0.2.3")


def test_host_names_and_the_every_address_bind() -> None:
    assert host_name("127.0.0.1:7860") == "127.0.0.1"
    assert host_name("[::1]:7860") == "::1"
    assert host_name("Med.Hospital.LAN") == "med.hospital.lan"
    assert allowed_host_names(ServeOptions()) == frozenset({"127.0.0.1", "localhost", "::1"})
    assert "ward-pc" in allowed_host_names(ServeOptions(host="192.168.1.5", allowed_hosts=("Ward-PC",)))
    assert "192.168.1.5" in allowed_host_names(ServeOptions(host="192.168.1.5"))
    with pytest.raises(AuthError, match="--allowed-host"):
        allowed_host_names(ServeOptions(host="0.0.0.0"))
    assert "0.0.0.0" not in allowed_host_names(ServeOptions(host="0.0.0.0", allowed_hosts=("ward-pc",)))


def test_a_running_server_follows_the_users_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Removed users lose their sessions, demoted administrators their rights; an unreadable file lets
    nobody in (the server logs why) until it is mended."""
    path = tmp_path / "users.txt"
    write_users(path, Users({}).with_account("alice", PASSWORD, admin=True).with_account("bob", PASSWORD, False))
    live = live_users(read_users_file(path))
    options = ServeOptions(host="0.0.0.0", users=live.current(), admins=live.current().admins)
    state = AppState(ScriptedEngine(lambda _prompt: "ok"), options, live)
    tokens = {"t1": "alice", "t2": "bob"}
    sessions = SessionClock(lambda: tokens, max_age_s=3600, users=live)
    sessions.sweep()
    assert state.is_admin("alice") and tokens == {"t1": "alice", "t2": "bob"}

    write_users(path, read_users_file(path).without("bob").with_account("alice", PASSWORD, admin=False))
    sessions.sweep()
    assert tokens == {"t1": "alice"} and not state.is_admin("alice")
    assert LoginGuard(read_users_file(path)).check("alice", PASSWORD, "127.0.0.1")

    path.write_text("alice:not a hash\n")
    with caplog.at_level(logging.ERROR, logger="app.security"):
        sessions.sweep()
    assert tokens == {} and len(live.current()) == 0
    assert f"nobody gets in with {path} until it is mended" in caplog.text


def test_a_users_file_opened_to_others_lets_nobody_in_until_closed_again(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """chmod 644 changes neither content nor modification time; a running server still refuses the file,
    as at startup."""
    path = tmp_path / "users.txt"
    write_users(path, Users({}).with_account("alice", PASSWORD, admin=True))
    live = live_users(read_users_file(path))
    path.chmod(0o644)
    with caplog.at_level(logging.ERROR, logger="app.security"):
        assert len(live.current()) == 0
    assert "nobody gets in" in caplog.text
    path.chmod(0o600)
    assert "alice" in live.current()


def test_a_changed_password_ends_that_users_sessions(tmp_path: Path) -> None:
    path = tmp_path / "users.txt"
    write_users(path, Users({}).with_account("alice", PASSWORD, admin=True).with_account("bob", PASSWORD, False))
    live = live_users(read_users_file(path))
    tokens = {"t1": "alice", "t2": "bob"}
    sessions = SessionClock(lambda: tokens, max_age_s=3600, users=live)
    sessions.sweep()
    write_users(path, read_users_file(path).with_account("bob", PASSWORD + " new", admin=False))
    sessions.sweep()
    assert tokens == {"t1": "alice"}
    tokens["t3"] = "bob"  # a login with the new password
    sessions.sweep()
    assert tokens == {"t1": "alice", "t3": "bob"}


def test_sessions_expire_after_their_age() -> None:
    clock = FakeClock()
    tokens = {"old": "alice"}
    sessions = SessionClock(lambda: tokens, max_age_s=60, clock=clock)
    sessions.sweep()
    clock.now += 30
    tokens["new"] = "bob"
    sessions.sweep()
    clock.now += 31
    sessions.sweep()
    assert tokens == {"new": "bob"}
    clock.now += 30
    sessions.sweep()
    assert tokens == {}


def run_user(*args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*JMEDLLM, "user", *args], input=password, capture_output=True, text=True,
                          cwd=REPO_ROOT, env=os.environ.copy(), timeout=60)


def test_user_cli_adds_lists_and_removes_through_a_private_file(tmp_path: Path) -> None:
    path = tmp_path / "new-folder" / "users.txt"
    added = run_user("add", "alice", "--admin", "--password-stdin", "--file", str(path), password=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    second = run_user("add", "bob", "--password-stdin", "--file", str(path), password="second password \n")
    assert second.returncode == 0, second.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert list(path.parent.iterdir()) == [path]  # no temporary file left beside it
    users = read_users_file(path)
    assert users.verify("alice", PASSWORD) and users.verify("bob", "second password ") and users.admins == {"alice"}

    listed = run_user("list", "--file", str(path))
    assert listed.returncode == 0 and listed.stdout.splitlines() == ["alice\tadmin", "bob"]
    assert "scrypt" not in listed.stdout

    short = run_user("add", "carol", "--password-stdin", "--file", str(path), password="short\n")
    assert short.returncode == 1 and "at least 12 characters" in short.stderr

    assert run_user("remove", "bob", "--file", str(path)).returncode == 0
    assert run_user("list", "--file", str(path)).stdout.splitlines() == ["alice\tadmin"]
    missing = run_user("remove", "bob", "--file", str(path))
    assert missing.returncode == 1 and "No user named bob" in missing.stderr

    path.chmod(0o644)
    refused = run_user("list", "--file", str(path))
    assert refused.returncode == 1 and "chmod 600" in refused.stderr


@pytest.mark.parametrize(("name", "password", "expected"), [
    ("carol", "aaaaaaaaaaaaaaaa", "too easy to guess"),
    ("carol", "Carol-1234567890", "too easy to guess"),
    ("dave\x1b[31m", PASSWORD, "Invalid user name"),
])
def test_user_cli_refuses_weak_passwords_and_control_characters(tmp_path: Path, name: str, password: str,
                                                                expected: str) -> None:
    path = tmp_path / "users.txt"
    result = run_user("add", name, "--password-stdin", "--file", str(path), password=password + "\n")
    assert result.returncode == 1 and expected in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not path.exists()


@pytest.mark.parametrize("stdin_errors", ["strict", "surrogateescape"])
def test_user_cli_gives_one_line_for_bad_input_or_places(tmp_path: Path, stdin_errors: str) -> None:
    path = tmp_path / "users.txt"
    added = subprocess.run([*JMEDLLM, "user", "add", "erin", "--password-stdin", "--file", str(path)],
                           input=b"correct horse \xff battery\n", capture_output=True, cwd=REPO_ROOT, timeout=60,
                           env={**os.environ, "PYTHONIOENCODING": f"utf-8:{stdin_errors}"})
    assert added.returncode == 1 and b"not valid UTF-8" in added.stderr and b"Traceback" not in added.stderr
    assert not path.exists()
    missing = run_user("list", "--file", str(path))
    assert missing.returncode == 1 and f"jmedllm user add NAME --file {path}" in missing.stderr, missing.stderr
    path.write_bytes(b"\xff\xfe not text\n")
    path.chmod(0o600)
    garbled = run_user("list", "--file", str(path))
    assert garbled.returncode == 1 and "is not UTF-8 text" in garbled.stderr, garbled.stderr
    assert "Traceback" not in garbled.stderr
    blocked = run_user("add", "erin", "--password-stdin", "--file", str(path / "users.txt"), password=PASSWORD + "\n")
    assert blocked.returncode == 1 and f"Cannot write the users file {path / 'users.txt'}" in blocked.stderr
    assert "Traceback" not in blocked.stderr, blocked.stderr


def test_user_add_says_sessions_end_only_when_the_password_changed(tmp_path: Path) -> None:
    path = tmp_path / "users.txt"
    args = ("add", "erin", "--password-stdin", "--file", str(path))
    assert "logs out" not in run_user(*args, password=PASSWORD + "\n").stdout
    role_only = run_user(*args, "--admin", password=PASSWORD + "\n")
    assert role_only.returncode == 0 and "Updated erin (admin)" in role_only.stdout
    assert "logs out" not in role_only.stdout, role_only.stdout
    changed = run_user(*args, password=PASSWORD + " 2\n")
    assert changed.returncode == 0 and "logs out the sessions opened with the old password" in changed.stdout
