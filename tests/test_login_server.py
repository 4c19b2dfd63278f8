"""Logins, sessions, Host/Origin checks and uploads against a real `jmedllm serve` with a users file.

One server for the module, with a short session lifetime. Throttling tests log in from their own
loopback source addresses (127.0.0.x), so a lockout in one test never touches another.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.security import MAX_FAILURES, Users, read_users_file
from app.ui.server import MAX_UPLOAD_BYTES
from app.users_cli import write_users
from tests.conftest import Server, run_cli, start_server, stop_server
from tests.test_security import run_user

pytestmark = pytest.mark.slow

ALICE, BOB = ("alice", "alice's long password"), ("bob", "bob's long password ")
CAROL = ("carol", "a long password of hers")
WARD_KEY, LEAVING_KEY = "ward-key-" + "w" * 24, "leaving-key-" + "l" * 24
SESSION_HOURS = 0.002  # 7.2 seconds


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-cache")


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("login-users") / "users.txt"
    accounts = Users({}).with_account(*ALICE, admin=True).with_account(*BOB, admin=False)
    path.write_text(accounts.with_account(*CAROL, admin=True).text())
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def keys_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("login-keys") / "api-keys.txt"
    path.write_text(f"# the ward's EHR plug-in\n{WARD_KEY}\n{LEAVING_KEY}\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, demo_model_path: Path, app_data_dir: Path,
           cache_dir: Path, users_file: Path, keys_file: Path) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("login-server")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JMEDLLM_CACHE_DIR", str(cache_dir))
        server = start_server(
            ["--model", str(demo_model_path), "--ctx", "1024", "--gpu-layers", "0", "--auth-file", str(users_file),
             "--api-key-file", str(keys_file), "--history",
             "--session-hours", str(SESSION_HOURS)],
            folder / "server.log", app_data_dir / "login-tests.db",
        )
    yield server
    stop_server(server)


def client(server: Server, source: str = "127.0.0.1") -> httpx.Client:
    """An HTTP client whose requests come from the loopback address ``source``."""
    return httpx.Client(base_url=server.url, transport=httpx.HTTPTransport(local_address=source), timeout=30)


def login(http: httpx.Client, name: str, password: str) -> httpx.Response:
    return http.post("/login", data={"username": name, "password": password})


def test_login_works_sets_the_session_cookie_and_the_session_expires(server: Server) -> None:
    with client(server) as http:
        assert http.get("/gradio_api/login_check").status_code == 401
        assert login(http, ALICE[0], "not the password").status_code == 400
        response = login(http, *ALICE)
        assert response.status_code == 200 and response.json() == {"success": True}
        assert any(name.startswith("access-token") for name in http.cookies)
        assert http.get("/gradio_api/login_check").status_code == 200
        time.sleep(SESSION_HOURS * 3600 + 1)
        assert http.get("/gradio_api/login_check").status_code == 401
    assert "alice's long password" not in server.log_path.read_text()


def test_trailing_spaces_in_a_password_count(server: Server) -> None:
    with client(server, "127.0.0.2") as http:
        assert login(http, BOB[0], BOB[1].rstrip()).status_code == 400
        assert login(http, *BOB).status_code == 200


def test_a_user_is_locked_out_after_repeated_failures_from_any_address(server: Server) -> None:
    with client(server, "127.0.0.3") as attacker:
        for _ in range(MAX_FAILURES):
            assert login(attacker, ALICE[0], "guess").status_code == 400
    with client(server, "127.0.0.4") as elsewhere:
        assert login(elsewhere, *ALICE).status_code == 400
        assert login(elsewhere, *BOB).status_code == 200
    log = server.log_path.read_text()
    assert "locked out" in log and "user:alice" in log and "guess" not in log


def test_an_address_is_locked_out_after_repeated_failures_for_any_user(server: Server) -> None:
    with client(server, "127.0.0.5") as attacker:
        for number in range(MAX_FAILURES):
            assert login(attacker, f"nobody{number}", "guess").status_code == 400
        assert login(attacker, *BOB).status_code == 400
    with client(server, "127.0.0.6") as elsewhere:
        assert login(elsewhere, *BOB).status_code == 200
    assert "address:127.0.0.5" in server.log_path.read_text()


def test_a_user_removed_while_the_server_runs_is_logged_out_at_once(server: Server, users_file: Path) -> None:
    """A member of staff who leaves loses access when IT removes them, without a restart."""
    with client(server, "127.0.0.9") as http:
        assert login(http, *CAROL).status_code == 200
        assert http.get("/gradio_api/login_check").status_code == 200
        removed = run_cli("user", "remove", CAROL[0], "--file", str(users_file))
        assert removed.returncode == 0 and "logs them out at once" in removed.stdout, removed.stderr
        assert http.get("/gradio_api/login_check").status_code == 401
        assert login(http, *CAROL).status_code == 400
    with client(server, "127.0.0.10") as http:
        assert login(http, *BOB).status_code == 200  # the others stay
    assert "session ended, no longer in the users file: user='carol'" in server.log_path.read_text()


def test_a_changed_password_ends_the_sessions_opened_with_the_old_one(server: Server, users_file: Path) -> None:
    """Someone who learnt a colleague's password loses the session they opened with it when IT changes it."""
    dave, new_password = ("dave", "his first long password"), "his second long password"
    write_users(users_file, read_users_file(users_file).with_account(*dave, admin=False))
    with client(server, "127.0.0.12") as http:
        assert login(http, *dave).status_code == 200
        assert http.get("/gradio_api/login_check").status_code == 200
        changed = run_user("add", dave[0], "--password-stdin", "--file", str(users_file), password=new_password)
        assert changed.returncode == 0 and "logs out the sessions opened with the old password" in changed.stdout
        assert http.get("/gradio_api/login_check").status_code == 401
        assert login(http, *dave).status_code == 400
        assert login(http, dave[0], new_password).status_code == 200
    assert "session ended, password changed: user='dave'" in server.log_path.read_text()


def test_ward_users_see_only_their_own_history(server: Server, users_file: Path) -> None:
    """A conversation kept by one ward user (patient text) is not listed, opened, exported or deleted
    by another, through the UI's API; its owner still has it."""
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    erin, frank = ("erin", "erin's long password"), ("frank", "frank's long password")
    write_users(users_file, read_users_file(users_file).with_account(*erin, admin=False)
                .with_account(*frank, admin=False))

    def as_user(account: tuple[str, str]) -> Client:  # a fresh login each time: the sessions here are short
        return Client(server.url, auth=account, verbose=False)

    as_user(erin).predict("患者 山田花子 72歳 胸痛", "", "auto", "auto", "0", 16, "default", True, api_name="/chat")
    (kept,) = [value for _label, value in as_user(erin).predict(api_name="/history_list")["choices"]]
    other = as_user(frank)
    assert other.predict(api_name="/history_list")["choices"] == []
    refused = "No saved conversation|not in the list of choices"
    for endpoint in ("/history_open", "/history_export"):
        with pytest.raises(AppError, match=refused):
            other.predict(kept, "en", api_name=endpoint)
    with pytest.raises(AppError, match=refused):
        other.predict(kept, "en", api_name="/history_delete")
    other.predict(None, api_name="/history_delete_all")
    assert [value for _label, value in as_user(erin).predict(api_name="/history_list")["choices"]] == [kept]


def test_an_api_key_revoked_while_the_server_runs_stops_working(server: Server, keys_file: Path) -> None:
    def status(key: str) -> int:
        with client(server, "127.0.0.11") as http:
            return http.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code

    assert status(WARD_KEY) == 200 and status(LEAVING_KEY) == 200
    keys_file.write_text(f"# the ward's EHR plug-in\n{WARD_KEY}\n")  # edited in place, as an editor does
    assert status(LEAVING_KEY) == 401 and status(WARD_KEY) == 200


def test_a_foreign_host_header_gets_400(server: Server) -> None:
    with client(server) as http:
        assert http.get("/", headers={"Host": "evil.example"}).status_code == 400
        assert http.get("/config", headers={"Host": f"evil.example:{server.port}"}).status_code == 400
        assert http.get("/", headers={"Host": f"localhost:{server.port}"}).status_code == 200


def test_a_foreign_origin_gets_403_and_no_cors_echo(server: Server) -> None:
    evil = {"Origin": "http://evil.example"}
    with client(server, "127.0.0.8") as http:
        for response in (
            http.post("/login", data={"username": BOB[0], "password": BOB[1]}, headers=evil),
            http.get("/config", headers=evil),
            http.options("/login", headers={**evil, "Access-Control-Request-Method": "POST"}),
            http.get("/config", headers={"Origin": "null"}),
        ):
            assert response.status_code == 403
            assert not any(name.lower().startswith("access-control-") for name in response.headers)
        same_origin = http.post("/login", data={"username": BOB[0], "password": BOB[1]},
                                headers={"Origin": server.url.rstrip("/")})
        assert same_origin.status_code == 200
        assert "access-control-allow-origin" not in same_origin.headers


def test_uploads_are_capped_and_kept_in_a_private_folder(server: Server, cache_dir: Path) -> None:
    with client(server, "127.0.0.7") as http:
        assert http.post("/gradio_api/upload", files={"files": ("a.txt", b"hello")}).status_code == 401
        assert login(http, *BOB).status_code == 200
        too_big = http.post("/gradio_api/upload", files={"files": ("big.bin", b"x" * (MAX_UPLOAD_BYTES + 1))})
        assert too_big.status_code == 413
        small = http.post("/gradio_api/upload", files={"files": ("a.txt", b"hello")})
        assert small.status_code == 200
    stored = Path(small.json()[0])
    folder = next(cache_dir.glob("uploads-*"))
    assert stored.is_relative_to(folder) and stored.read_bytes() == b"hello"
    assert folder.stat().st_mode & 0o777 == 0o700


def test_a_browser_logs_in_through_the_login_page(server: Server) -> None:
    from playwright.sync_api import sync_playwright

    from tests.test_browser import CHROMIUM_FLAGS, chromium_path

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(server.url, wait_until="load")
        page.locator("input[type=text]").first.fill(BOB[0], timeout=30_000)
        page.get_by_text("wrong passwords, logging in is locked for 15 minutes").wait_for()  # why a right one can fail
        page.locator("input[type=password]").fill(BOB[1])
        page.get_by_role("button", name="Login").click()
        page.wait_for_selector("#chat-input textarea", timeout=30_000)
        session = {cookie["name"]: cookie["value"] for cookie in page.context.cookies()}
        page.locator("#logout").click()  # the next person at a shared ward PC gets the login page
        page.locator("input[type=password]").wait_for(timeout=30_000)
        browser.close()
    with httpx.Client(base_url=server.url, cookies=session, timeout=30) as http:  # the old cookie is dead too
        assert http.get("/gradio_api/login_check").status_code == 401


def test_stopping_the_server_removes_its_upload_folder(server: Server, cache_dir: Path) -> None:
    """Runs last in this module: it stops the shared server."""
    assert list(cache_dir.glob("uploads-*"))
    stop_server(server)
    assert server.process.returncode is not None
    assert not list(cache_dir.glob("uploads-*"))
