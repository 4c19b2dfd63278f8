"""Logins: the users file (scrypt password hashes), its one parsing rule, the login throttle, and API keys.

The users file (``--auth-file``; else ``$JMEDLLM_AUTH``; else ``<data folder>/users.txt`` if it
exists) and ``$JMEDLLM_AUTH`` hold the same lines, one account each, newline-separated::

    # comment
    NAME:scrypt$N$r$p$SALT_B64$HASH_B64
    NAME:scrypt$N$r$p$SALT_B64$HASH_B64:admin

``NAME`` has no whitespace and no ``:``; passwords are never stored, only their scrypt hash
(``hashlib.scrypt``, N=2**14, r=8, p=1, 16-byte salt, 32-byte key). ``jmedllm user add`` writes
these lines. A users file that group or others may read or write is refused.

The OpenAI-compatible API takes ``Authorization: Bearer KEY`` with keys from ``--api-key-file``
(one a line, ``#`` comments, private like the users file), else ``$JMEDLLM_API_KEYS`` (separated
by commas, spaces or newlines). Only the keys' sha256 digests are kept; a key's id, logged with
each request, is the first 8 hex digits of its digest.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from app.errors import UserError
from app.paths import data_dir

AUTH_ENV = "JMEDLLM_AUTH"
USERS_FILE_NAME = "users.txt"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES, KEY_BYTES = 16, 32
SCRYPT_MAXMEM = 64 * 1024 * 1024
MIN_PASSWORD_LENGTH = 12
ADMIN_FLAG = "admin"
NAME_PATTERN = re.compile(r"[^\s:#][^\s:]{0,63}")

MAX_FAILURES = 5
FAILURE_WINDOW_S = 15 * 60.0
LOCKOUT_S = 15 * 60.0
FAILURE_DELAY_S = 1.0
_MAX_TRACKED_KEYS = 10_000

API_KEYS_ENV = "JMEDLLM_API_KEYS"
MIN_API_KEY_LENGTH = 24
API_KEY_ID_CHARS = 8
API_KEY_PATTERN = re.compile(r"[!-~]+")  # printable ASCII, no spaces
NEW_KEY_COMMAND = "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"

log = logging.getLogger(__name__)
T = TypeVar("T")


class AuthError(UserError, ValueError):
    """The login settings are unreadable, malformed, unsafe, or missing where a login is required."""


def check_name(name: str) -> str:
    """``name`` if it can be a user name: 1-64 printable characters (any script), no whitespace or ':',
    not starting with '#' (no control characters: names are shown in terminals and logs)."""
    if not NAME_PATTERN.fullmatch(name) or not name.isprintable():
        raise AuthError(f"Invalid user name {name!r}: 1-64 printable characters, no spaces, control characters "
                        "or ':', not starting with '#'.")
    return name


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=length, maxmem=SCRYPT_MAXMEM)


@dataclass(frozen=True)
class PasswordHash:
    """A parsed ``scrypt$N$r$p$salt$hash`` record."""

    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    @classmethod
    def create(cls, password: str) -> PasswordHash:
        """The hash of ``password`` with a fresh random salt."""
        salt = secrets.token_bytes(SALT_BYTES)
        return cls(SCRYPT_N, SCRYPT_R, SCRYPT_P, salt, _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_BYTES))

    @classmethod
    def parse(cls, record: str) -> PasswordHash:
        """Read a ``scrypt$N$r$p$salt$hash`` record (ValueError when malformed)."""
        parts = record.split("$")
        if len(parts) != 6 or parts[0] != "scrypt":
            raise ValueError("not a scrypt record")
        n, r, p = (int(part) for part in parts[1:4])
        if n < 2 or n & (n - 1) or not 1 <= r <= 64 or not 1 <= p <= 16:
            raise ValueError("bad scrypt parameters")
        salt, key = (base64.b64decode(part, validate=True) for part in parts[4:])
        if not salt or not key:
            raise ValueError("empty salt or hash")
        return cls(n, r, p, salt, key)

    @property
    def record(self) -> str:
        """This hash as a ``scrypt$N$r$p$salt$hash`` record."""
        return f"scrypt${self.n}${self.r}${self.p}${_b64(self.salt)}${_b64(self.key)}"

    def matches(self, password: str) -> bool:
        """Whether ``password`` hashes to this record (constant-time comparison)."""
        return hmac.compare_digest(_scrypt(password, self.salt, self.n, self.r, self.p, len(self.key)), self.key)


@dataclass(frozen=True)
class Account:
    name: str
    password: PasswordHash
    admin: bool

    def line(self) -> str:
        """This account as a users-file line."""
        return f"{self.name}:{self.password.record}" + (f":{ADMIN_FLAG}" if self.admin else "")


@functools.cache
def _dummy_hash() -> PasswordHash:
    """A hash no password matches, checked for unknown names so they take as long as known ones."""
    return PasswordHash.create(secrets.token_urlsafe(32))


class Users:
    """The accounts allowed to log in, and the users file they were read from (None: not from a file)."""

    def __init__(self, accounts: Mapping[str, Account], path: Path | None = None) -> None:
        self._accounts = dict(accounts)
        self.path = path

    @classmethod
    def parse(cls, text: str, source: str, path: Path | None = None) -> Users:
        """Accounts from users-file lines (of the file ``path``, if from one); blank lines and ``#`` comments
        skipped."""
        accounts: dict[str, Account] = {}
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{source}, line {number}"
            name, _, rest = line.partition(":")
            record, _, flag = rest.partition(":")
            try:
                check_name(name)
            except AuthError as exc:
                raise AuthError(f"{where}: {exc}") from exc
            if not record.startswith("scrypt$"):
                raise AuthError(
                    f"{where}: plain-text passwords are not accepted. Store a password hash instead: "
                    f"run `jmedllm user add {name} --file FILE` and remove the old line."
                )
            try:
                password = PasswordHash.parse(record)
            except ValueError as exc:
                raise AuthError(f"{where}: malformed password hash ({exc}); recreate it: jmedllm user add") from exc
            if flag not in ("", ADMIN_FLAG):
                raise AuthError(f'{where}: unknown flag "{flag}" (only "{ADMIN_FLAG}")')
            if name in accounts:
                raise AuthError(f"{where}: user {name} is listed twice")
            accounts[name] = Account(name, password, flag == ADMIN_FLAG)
        return cls(accounts, path)

    def text(self) -> str:
        """The users-file text of these accounts."""
        return "".join(account.line() + "\n" for account in self._accounts.values())

    def __iter__(self) -> Iterator[Account]:
        return iter(self._accounts.values())

    def __len__(self) -> int:
        return len(self._accounts)

    def __contains__(self, name: object) -> bool:
        return name in self._accounts

    def get(self, name: str) -> Account | None:
        """The account of ``name``, if there is one."""
        return self._accounts.get(name)

    def with_account(self, name: str, password: str, admin: bool) -> Users:
        """A copy with ``name`` added or replaced; a password unchanged keeps its hash, so only a new password
        ends the user's sessions on a running server (:class:`app.ui.server.SessionClock`)."""
        old = self._accounts.get(check_name(name))
        kept = old.password if old is not None and old.password.matches(password) else None
        account = Account(name, kept or PasswordHash.create(password), admin)
        return Users({**self._accounts, name: account}, self.path)

    def without(self, name: str) -> Users:
        """A copy without ``name``."""
        if name not in self._accounts:
            raise AuthError(f"No user named {name}")
        return Users({key: value for key, value in self._accounts.items() if key != name}, self.path)

    def verify(self, name: str, password: str) -> bool:
        """Whether ``password`` is ``name``'s (an unknown name costs the same hash, so timing reveals nothing)."""
        account = self._accounts.get(name)
        matches = (account.password if account else _dummy_hash()).matches(password)
        return matches and account is not None

    def is_admin(self, name: str | None) -> bool:
        account = self._accounts.get(name or "")
        return account is not None and account.admin

    @property
    def admins(self) -> frozenset[str]:
        return frozenset(account.name for account in self if account.admin)


def check_private(path: Path, what: str = "users file") -> None:
    """Refuse a secrets file (``what``: "users file", "API keys file") that group or others may read or write."""
    if os.name == "nt":
        return
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise AuthError(
            f"The {what} {path} is readable or writable by other users (mode {mode:04o}); "
            f"make it private: chmod 600 {path}"
        )


def read_users_file(path: Path) -> Users:
    """The accounts in the users file ``path`` (which must exist and be private)."""
    path = Path(path)
    try:
        check_private(path)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise AuthError(f"No users file at {path}: create it with `jmedllm user add NAME --file {path}`.") from exc
    except OSError as exc:
        raise AuthError(f"Cannot read the users file {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise AuthError(f"The users file {path} is not UTF-8 text (byte {exc.start}): restore it from a backup, "
                        "or recreate it with `jmedllm user add`.") from exc
    return Users.parse(text, str(path), path)


class LiveFile(Generic[T]):
    """What ``read`` makes of the secrets file ``path``, read again whenever the file changes, so a running
    server follows its users file (a removed user can no longer log in, a demoted administrator is no
    longer one) and its API keys file (a revoked key stops working). A file that cannot be read then gives
    ``empty`` (nobody gets in; logged) until it is mended. Without a ``path`` (from the environment),
    ``value`` stays."""

    def __init__(self, value: T, path: Path | None, read: Callable[[Path], T], empty: T) -> None:
        self._value = value
        self._path = path
        self._read = read
        self._empty = empty
        self._seen = self._signature()
        self._lock = threading.Lock()

    def _signature(self) -> tuple[int, ...] | None:
        """What tells a changed file: its inode (the app replaces it atomically), modification time, size,
        and its mode and owner (a file opened to others is refused, as at startup)."""
        try:
            found = self._path.stat() if self._path else None
        except OSError:
            return None
        return (found.st_ino, found.st_mtime_ns, found.st_size, found.st_mode, found.st_uid) if found else None

    def current(self) -> T:
        """The value now: the file read again if it changed since last asked."""
        if self._path is None:
            return self._value
        with self._lock:
            signature = self._signature()
            if signature != self._seen:
                self._seen = signature
                try:
                    self._value = self._read(self._path)
                    log.info("%s changed, read again", self._path)
                except AuthError as exc:
                    self._value = self._empty
                    log.error("nobody gets in with %s until it is mended: %s", self._path, exc)
            return self._value


def live_users(users: Users) -> LiveFile[Users]:
    """``users``, following the users file they were read from."""
    return LiveFile(users, users.path, read_users_file, Users({}, users.path))


def default_users_file() -> Path:
    """The users file of ``jmedllm user`` without ``--file``: ``users.txt`` in the data folder."""
    return data_dir() / USERS_FILE_NAME


def load_users(users_file: Path | None) -> Users | None:
    """Accounts from ``users_file``, else ``$JMEDLLM_AUTH``, else the default users file if it exists.

    ``None`` when there is none of these: no login.
    """
    env = os.environ.get(AUTH_ENV)
    if users_file is None and not env and default_users_file().exists():
        users_file = default_users_file()
    if users_file is not None:
        users = read_users_file(users_file)
        source = str(users_file)
    elif env:
        users = Users.parse(env, f"${AUTH_ENV}")
        source = f"${AUTH_ENV}"
    else:
        return None
    if not users:
        raise AuthError(f"{source} holds no account; add one with `jmedllm user add NAME`")
    return users



class ApiKeys:
    """The keys the OpenAI-compatible API accepts, held as sha256 digests only (never the keys)."""

    def __init__(self, digests: Iterable[bytes]) -> None:
        self._digests = tuple(digests)

    @classmethod
    def parse(cls, keys: Iterable[tuple[str, str]]) -> ApiKeys:
        """Keys from ``(where, key)`` pairs; ``where`` names the key's place in an error (never the key)."""
        digests = []
        for where, key in keys:
            if len(key) < MIN_API_KEY_LENGTH or not API_KEY_PATTERN.fullmatch(key):
                raise AuthError(f"{where}: an API key must be at least {MIN_API_KEY_LENGTH} printable ASCII "
                                f"characters without spaces; make one with {NEW_KEY_COMMAND}")
            digests.append(_key_digest(key))
        return cls(digests)

    def __len__(self) -> int:
        return len(self._digests)

    def verify(self, presented: str) -> str | None:
        """The key id of ``presented`` if it is one of the keys, else None (every key compared, in constant time)."""
        digest = _key_digest(presented)
        matched = False
        for known in self._digests:
            matched |= hmac.compare_digest(known, digest)
        return digest.hex()[:API_KEY_ID_CHARS] if matched else None


def _key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "replace")).digest()


def new_api_key() -> str:
    """A fresh random API key (43 URL-safe characters)."""
    return secrets.token_urlsafe(32)


def read_api_keys_file(path: Path) -> ApiKeys:
    """The keys in the API keys file ``path`` (one a line, ``#`` comments; the file must be private)."""
    try:
        check_private(path, "API keys file")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthError(f"Cannot read the API keys file {path}: {exc}") from exc
    lines = ((number, raw.strip()) for number, raw in enumerate(text.splitlines(), start=1))
    return ApiKeys.parse((f"{path}, line {number}", line) for number, line in lines
                         if line and not line.startswith("#"))


def load_api_keys(path: Path | None) -> ApiKeys | None:
    """Keys from ``path`` (one a line, ``#`` comments), else ``$JMEDLLM_API_KEYS`` (separated by commas,
    spaces or newlines), else None: no keys configured."""
    env = os.environ.get(API_KEYS_ENV)
    if path is not None:
        source = str(path)
        keys = read_api_keys_file(Path(path))
    elif env:
        source = f"${API_KEYS_ENV}"
        keys = ApiKeys.parse((f"{source}, key {number}", key)
                             for number, key in enumerate(re.split(r"[\s,]+", env.strip()), start=1) if key)
    else:
        return None
    if not keys:
        raise AuthError(f"{source} holds no API key; add one, e.g. from {NEW_KEY_COMMAND}")
    return keys


class Throttle:
    """Failed logins counted per key (user name, client address); a key with too many is locked out.

    ``MAX_FAILURES`` failures within ``FAILURE_WINDOW_S`` lock a key for ``LOCKOUT_S``. In memory and
    thread-safe.
    """

    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = FAILURE_WINDOW_S,
                 lockout_s: float = LOCKOUT_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self._clock = clock
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def locked(self, *keys: str) -> bool:
        """Whether any of ``keys`` is locked out now."""
        return self.seconds_locked(*keys) > 0

    def seconds_locked(self, *keys: str) -> float:
        """How long the lockout of ``keys`` lasts from now (the longest of theirs); 0 when none is locked."""
        now = self._clock()
        with self._lock:
            return max([0.0, *(self._locked_until.get(key, 0.0) - now for key in keys)])

    def fail(self, *keys: str) -> list[str]:
        """Count a failure for each key; the keys this failure locked out."""
        now = self._clock()
        newly_locked = []
        with self._lock:
            if len(self._failures) > _MAX_TRACKED_KEYS:
                self._forget_old(now)
            for key in keys:
                recent = [at for at in self._failures.get(key, []) if now - at < self.window_s] + [now]
                self._failures[key] = recent
                if len(recent) >= self.max_failures and self._locked_until.get(key, 0.0) <= now:
                    self._locked_until[key] = now + self.lockout_s
                    self._failures[key] = []
                    newly_locked.append(key)
        return newly_locked

    def clear(self, key: str) -> None:
        """Forget the failures of ``key`` (after a successful login)."""
        with self._lock:
            self._failures.pop(key, None)

    def _forget_old(self, now: float) -> None:
        self._failures = {k: v for k, v in self._failures.items() if v and now - v[-1] < self.window_s}
        self._locked_until = {k: v for k, v in self._locked_until.items() if v > now}


class FailureDelay:
    """The pause after a wrong password or API key, taken one at a time across the whole server.

    Guesses sent in parallel, or from many addresses (real ones, or ones a local process claims in
    ``X-Forwarded-For``, which uvicorn trusts from 127.0.0.1 for a reverse proxy), wait in one line:
    at most one wrong guess a ``seconds``. Right passwords and keys never wait.
    """

    def __init__(self, seconds: float = FAILURE_DELAY_S) -> None:
        self.seconds = seconds
        self._line = asyncio.Lock()

    async def wait(self) -> None:
        async with self._line:
            await asyncio.sleep(self.seconds)


def login_page_message() -> str:
    """The login page's note: the lockout rule, so a locked-out user knows why a right password fails."""
    return (f"{MAX_FAILURES}回続けて間違えると{LOCKOUT_S / 60:.0f}分間ログインできません。 / After {MAX_FAILURES} "
            f"wrong passwords, logging in is locked for {LOCKOUT_S / 60:.0f} minutes.")


def lockout_message(what: str, seconds: float) -> str:
    """The refusal while locked out: what was wrong too often, and when to try again."""
    minutes = max(1, round(seconds / 60))
    return (f"Too many wrong {what} from this address: locked out for {LOCKOUT_S / 60:.0f} minutes; "
            f"try again in about {minutes} minute{'s' if minutes != 1 else ''}.")


class LoginGuard:
    """Checks a login against the users, throttled per user name and per client address, and logs refusals."""

    def __init__(self, users: Users, throttle: Throttle | None = None) -> None:
        self.users = live_users(users)
        self.throttle = throttle or Throttle()

    def check(self, name: str, password: str, address: str) -> bool:
        """Whether this login may proceed and is correct (blocking: hashes with scrypt)."""
        keys = (f"user:{name}", f"address:{address}")
        if self.throttle.locked(*keys):
            log.warning("login refused (locked out): user=%r address=%s", name, address)
            return False
        if self.users.current().verify(name, password):
            self.throttle.clear(keys[0])
            log.info("login: user=%r address=%s", name, address)
            return True
        log.warning("login failed: user=%r address=%s", name, address)
        for key in self.throttle.fail(*keys):
            log.warning("locked out for %.0f minutes after %d failed logins: %s",
                        self.throttle.lockout_s / 60, self.throttle.max_failures, key)
        return False


def is_unspecified(host: str) -> bool:
    """Whether ``host`` binds every address (0.0.0.0, ::): clients then need ``--allowed-host`` names."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (localhost, 127.0.0.0/8, ::1): no login needed there."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
