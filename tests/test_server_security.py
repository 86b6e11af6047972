"""Security probes against a real server: Host, Origin, token, traversal, headers."""

from __future__ import annotations

import http.client
import json

import pytest
from websockets.exceptions import InvalidStatus

from mudpuppy_monitor.server.cli import prepare, url_for
from mudpuppy_monitor.server.security import (
    cookie_name,
    host_allowed,
    origin_matches,
    split_host,
    valid_run_id,
)
from mudpuppy_monitor.server.settings import Settings
from tests.serverutil import LiveServer, RunDir, ws_connect

TOKEN = "s3cret-t0ken"


def raw_get(server, path: str, headers: dict[str, str] | None = None):
    """A GET with the path sent byte for byte (no client-side normalisation of `..`)."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        hdrs = {"Host": f"{server.host}:{server.port}", **(headers or {})}
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    base = tmp_path_factory.mktemp("sec")
    root = base / "runs"
    RunDir(root, "r").metrics(1, loss=1.0)
    RunDir(base / "outside", "victim").metrics(1, loss=42.0)
    (root / "evil").symlink_to(base / "outside" / "victim", target_is_directory=True)
    web = base / "web"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>dash</title>")
    (web / "app.js").write_text("export {};")
    (base / "secret.txt").write_text("top secret")
    (web / "leak.txt").symlink_to(base / "secret.txt")
    return root, web


@pytest.fixture(scope="module")
def open_server(tree):
    root, web = tree
    with LiveServer(root, web_dir=web) as srv:
        yield srv


@pytest.fixture(scope="module")
def token_server(tree):
    root, web = tree
    with LiveServer(root, web_dir=web, token=TOKEN) as srv:
        yield srv


# -- pure rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run_id", "ok"),
    [
        ("a", True),
        ("sweep-3/lr-1e-4", True),
        ("a/b/c/d", True),
        ("", False),
        ("..", False),
        ("a/../b", False),
        ("/etc/passwd", False),
        ("a//b", False),
        ("a/./b", False),
        ("a\\..\\b", False),
        ("a\x00b", False),
        ("x" * 2000, False),
    ],
)
def test_run_id_validation(run_id, ok):
    assert valid_run_id(run_id) is ok


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("localhost:5980", "localhost"),
        ("127.0.0.1:80", "127.0.0.1"),
        ("[::1]:5980", "::1"),
        ("Example.COM.", "example.com"),
        ("localhost:abc", ""),
        ("[::1", ""),
        ("evil.com;x", ""),
    ],
)
def test_split_host(header, host):
    assert split_host(header) == host


def test_host_allow_list_accepts_ip_literals_and_listed_names_only():
    names = {"localhost", "box.lan"}
    assert host_allowed("127.0.0.1:5980", names)
    assert host_allowed("10.1.2.3:5980", names)
    assert host_allowed("BOX.lan:5980", names)
    assert not host_allowed("attacker.example:5980", names)
    assert not host_allowed("", names)
    assert not host_allowed(None, names)


def test_origin_must_be_this_server():
    assert origin_matches("http://127.0.0.1:5980", "127.0.0.1:5980")
    assert not origin_matches("http://127.0.0.1:5981", "127.0.0.1:5980")
    assert not origin_matches("http://evil.com", "127.0.0.1:5980")
    assert not origin_matches("null", "127.0.0.1:5980")
    assert not origin_matches("file://", "127.0.0.1:5980")


def test_a_non_loopback_bind_without_token_gets_one(tmp_path):
    settings = prepare(Settings(root=tmp_path, host="0.0.0.0", port=5980))
    assert settings.token is not None and len(settings.token) >= 32
    assert url_for(settings, 5980).endswith(f":5980/?token={settings.token}")
    assert prepare(Settings(root=tmp_path, host="127.0.0.1")).token is None
    assert prepare(Settings(root=tmp_path, host="10.0.0.5", token="mine")).token == "mine"


# -- probes on a real server ------------------------------------------------------------------


def test_foreign_origin_is_rejected_own_origin_accepted(open_server):
    with pytest.raises(InvalidStatus) as err:
        ws_connect(open_server, origin="http://evil.example")
    assert err.value.response.status_code == 403
    with pytest.raises(InvalidStatus):
        ws_connect(open_server, origin=f"http://127.0.0.1:{open_server.port + 1}")
    ws = ws_connect(open_server, origin=f"http://127.0.0.1:{open_server.port}")
    assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"
    ws.close()


def test_foreign_host_header_is_rejected(open_server):
    status, _, body = raw_get(
        open_server, "/api/runs", {"Host": f"attacker.example:{open_server.port}"}
    )
    assert status == 400
    assert json.loads(body) == {"error": "host not allowed"}
    assert raw_get(open_server, "/api/runs", {"Host": f"localhost:{open_server.port}"})[0] == 200


@pytest.mark.parametrize(
    "path",
    [
        "/api/runs/../../etc/passwd",
        "/api/runs/%2e%2e/%2e%2e/etc/passwd",
        "/api/runs/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
        "/api/runs/r/../../../etc/passwd/series",
        "/api/runs//etc/passwd",
        "/api/runs/%2Fetc%2Fpasswd/export",
        "/api/runs/evil",
        "/api/runs/evil/series",
        "/api/runs/evil/export?format=jsonl",
        "/../../../../etc/passwd",
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/..%2f..%2f..%2fetc%2fpasswd",
        "/leak.txt",
        "//etc/passwd",
    ],
)
def test_path_traversal_is_404(open_server, path):
    status, _, body = raw_get(open_server, path)
    assert status == 404, (path, body[:200])
    assert b"root:" not in body and b"top secret" not in body and b"42" not in body


def test_symlinked_run_out_of_the_root_is_not_listed(open_server):
    assert [r["id"] for r in open_server.get_json("/api/runs")["runs"]] == ["r"]


def test_headers_forbid_external_resources(open_server):
    for path in ("/", "/app.js", "/api/runs", "/metrics", "/nope"):
        status, headers, _ = raw_get(open_server, path)
        csp = headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp, path
        assert "frame-ancestors 'none'" in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
    status, headers, body = raw_get(open_server, "/")
    assert status == 200 and b"<title>dash</title>" in body


def test_no_openapi_docs_that_would_load_a_cdn(open_server):
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert raw_get(open_server, path)[0] == 404


def test_token_required_on_api_ws_metrics(token_server):
    for path in ("/api/runs", "/api/runs/r", "/metrics", "/api/gpus", "/"):
        assert raw_get(token_server, path)[0] == 401, path
        wrong = {"Authorization": "Bearer wrong"}
        assert raw_get(token_server, path, wrong)[0] == 401, path
        bad_cookie = {"Cookie": f"{cookie_name(token_server.port)}=nope"}
        assert raw_get(token_server, path, bad_cookie)[0] == 401, path
    assert raw_get(token_server, "/healthz")[0] == 200
    ok = {"Authorization": f"Bearer {TOKEN}"}
    assert raw_get(token_server, "/api/runs", ok)[0] == 200
    assert raw_get(token_server, "/metrics", ok)[0] == 200


def test_token_in_query_sets_an_httponly_samesite_cookie(token_server):
    status, headers, _ = raw_get(token_server, f"/api/runs?token={TOKEN}")
    assert status == 200
    cookie = headers["set-cookie"]
    name = cookie_name(token_server.port)
    assert cookie.startswith(f"{name}={TOKEN};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert raw_get(token_server, "/api/runs", {"Cookie": f"{name}={TOKEN}"})[0] == 200
    # the page URL printed by serve: the token moves into the cookie and out of the address
    status, headers, _ = raw_get(token_server, f"/?token={TOKEN}")
    assert status == 303 and headers["location"] == "/"
    assert headers["set-cookie"].startswith(f"{name}={TOKEN};")
    assert raw_get(token_server, "/", {"Cookie": f"{name}={TOKEN}"})[0] == 200
    status, headers, body = raw_get(token_server, "/?token=wrong")
    assert status == 401 and headers["content-type"].startswith("text/html")
    assert b"?token=" in body  # the page says where the token is


def test_token_on_the_websocket(token_server):
    with pytest.raises(InvalidStatus) as err:
        ws_connect(token_server, headers={"Authorization": "Bearer wrong"})
    assert err.value.response.status_code == 401
    from websockets.sync.client import connect

    with pytest.raises(InvalidStatus):
        connect(token_server.ws_url, proxy=None, open_timeout=5)
    with connect(f"{token_server.ws_url}?token={TOKEN}", proxy=None, open_timeout=5) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"
    cookie = {"Cookie": f"{cookie_name(token_server.port)}={TOKEN}"}
    with connect(token_server.ws_url, proxy=None, open_timeout=5, additional_headers=cookie) as ws:
        assert json.loads(ws.recv(timeout=5))["type"] == "snapshot"


@pytest.mark.parametrize(
    "other",
    ['a={"k":1}', "theme=dark mode", 'q="unterminated', "flag", "=x", "x=1;;"],
)
def test_token_cookie_is_found_behind_another_apps_malformed_cookie(token_server, other):
    # cookies are shared by every port of a host: another app's cookie comes along
    name = cookie_name(token_server.port)
    for header in (f"{other}; {name}={TOKEN}", f"{name}={TOKEN}; {other}"):
        assert raw_get(token_server, "/api/runs", {"Cookie": header})[0] == 200, header
    assert raw_get(token_server, "/api/runs", {"Cookie": f"{other}; {name}=nope"})[0] == 401


def test_cookie_values_parses_by_hand():
    from mudpuppy_monitor.server.security import cookie_values

    header = 'a={"k":1}; t = "v1" ;t=v2; tt=no; t'
    assert cookie_values(header, "t") == ["v1", "v2"]
    assert cookie_values("", "t") == []


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("//evil.example", "/evil.example"),
        ("///evil.example/x", "/evil.example/x"),
        ("/\\evil.example", "/%5Cevil.example"),
        ("/%E2%82%AC/page", "/%E2%82%AC/page"),  # a path that is not latin-1 once decoded
        ("/a%20b?x=1", "/a%20b?x=1"),
    ],
)
def test_token_redirect_stays_on_this_site(token_server, path, location):
    sep = "&" if "?" in path else "?"
    status, headers, _ = raw_get(token_server, f"{path}{sep}token={TOKEN}")
    assert status == 303
    assert headers["location"] == location
