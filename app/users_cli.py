"""``jmedllm user``: add, remove and list the accounts of the users file used by ``jmedllm serve``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from app.atomic import atomic_writer
from app.security import (
    MIN_PASSWORD_LENGTH,
    AuthError,
    Users,
    check_name,
    default_users_file,
    read_users_file,
)

F = TypeVar("F", bound=Callable[..., Any])
NOT_UTF8 = "The password is not valid UTF-8 text: check the terminal's or the file's encoding."


def file_option(func: F) -> F:
    return click.option("--file", "users_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="Users file (default: users.txt in the data folder).")(func)


def _resolve(users_file: Path | None) -> Path:
    return users_file or default_users_file()


def write_users(path: Path, users: Users) -> None:
    """Write ``users`` atomically to ``path``, 0600 (its folder, if new, 0700)."""
    try:
        with atomic_writer(path, private=True) as handle:
            handle.write(users.text().encode("utf-8"))
    except OSError as exc:
        raise AuthError(f"Cannot write the users file {path}: {exc.strerror or exc}. Check that its folder is "
                        "writable by you, or choose another --file.") from exc


def read_password(from_stdin: bool, name: str) -> str:
    """The new password of user ``name``: one line of stdin, or typed twice without echo; weak ones refused."""
    if from_stdin:
        try:
            password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
        except UnicodeDecodeError as exc:
            raise AuthError(NOT_UTF8) from exc
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    check_password(password, name)
    return password


def check_password(password: str, name: str) -> None:
    """Refuse a password that is too short, one character repeated, holds the user name, or is not UTF-8 text."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"The password is too short: at least {MIN_PASSWORD_LENGTH} characters.")
    if len(set(password)) == 1 or (len(name) >= 3 and name.casefold() in password.casefold()):
        raise AuthError("The password is too easy to guess (one character repeated, or the user name in it): "
                        "choose another.")
    try:
        password.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise AuthError(NOT_UTF8) from exc


@click.group()
def user() -> None:
    """Manage the logins of `jmedllm serve` (scrypt password hashes in a private users file)."""


@user.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="This user may load models from the UI.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin (for scripts).")
@file_option
def add(name: str, admin: bool, password_stdin: bool, users_file: Path | None) -> None:
    """Add user NAME (or replace their password and role)."""
    path = _resolve(users_file)
    check_name(name)
    users = read_users_file(path) if path.exists() else Users({})
    password = read_password(password_stdin, name)
    before, updated = users.get(name), users.with_account(name, password, admin)
    write_users(path, updated)
    after = updated.get(name)
    new_password = before is not None and after is not None and after.password != before.password
    click.echo(f"{'Updated' if before else 'Added'} {name}{' (admin)' if admin else ''} in {path}"
               + ("; a running server logs out the sessions opened with the old password" if new_password else ""))


@user.command("remove")
@click.argument("name")
@file_option
def remove(name: str, users_file: Path | None) -> None:
    """Remove user NAME."""
    path = _resolve(users_file)
    write_users(path, read_users_file(path).without(name))
    click.echo(f"Removed {name} from {path}; a running server logs them out at once")


@user.command("list")
@file_option
def list_users(users_file: Path | None) -> None:
    """List the user names (and who is admin); never the hashes."""
    path = _resolve(users_file)
    for account in read_users_file(path):
        click.echo(f"{account.name}\tadmin" if account.admin else account.name)
