"""Review server: page, approve/reject through the writer lock, 409 while locked, no path escapes ROOT."""

from __future__ import annotations

import http.client
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from assetgen.report.review import UnsafePath, create_app, resolve_under
from assetgen.store.index import Index
from assetgen.store.lock import root_lock
from tests.test_report_helpers import add_asset, serve_in_thread, tone


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    add_asset(root, "forest", "birds", tone(freq=300))
    add_asset(root, "forest", "birds", tone(freq=500))
    add_asset(root, "ocean", "waves", tone(seconds=3, freq=100), loop_start=0, loop_end=40000, seam_score=0.02)
    (tmp_path / "secret.wav").write_bytes(b"outside ROOT")
    return root


LOCAL = "http://127.0.0.1:8765"  # the Host a browser on the reviewer's machine sends


@pytest.fixture
def client(root: Path) -> TestClient:
    return TestClient(create_app(root, lock_wait_s=0.3), base_url=LOCAL)


def test_page_is_live_with_enabled_buttons(client: TestClient) -> None:
    assert client.get("/", follow_redirects=False).headers["location"] == "/report/index.html"
    html = client.get("/report/index.html").text
    assert 'data-live="true"' in html and "readonly-hint" not in html
    assert html.count('class="approve" data-status="approved">') == 2  # enabled: no disabled attribute
    assert client.get("/forest/birds/birds_v002.wav").headers["content-type"].startswith("audio/")


def test_page_makes_media_served_with_ranges(client: TestClient, root: Path) -> None:
    client.get("/report/index.html")
    key = Index(root).get("ocean", "waves")["content_key"]
    img = client.get(f"/report/media/{key}.png")
    assert img.status_code == 200 and img.content[:8] == b"\x89PNG\r\n\x1a\n"
    seam = client.get(f"/report/media/{key}_seam.wav", headers={"Range": "bytes=0-3"})
    assert seam.status_code == 206 and seam.content == b"RIFF"  # seeking in <audio> needs ranges


def test_approve_and_reject_update_index(client: TestClient, root: Path) -> None:
    r = client.post("/_review/status", json={"scene": "forest", "asset": "birds", "version": 1, "status": "approved"})
    assert r.status_code == 200, r.text
    assert r.json() == {"scene": "forest", "asset": "birds", "version": 1, "status": "approved"}
    assert Index(root).get("forest", "birds", 1)["status"] == "approved"
    assert Index(root).get("forest", "birds", 2)["status"] == "rendered"
    r = client.post("/_review/status", json={"scene": "ocean", "asset": "waves", "status": "rejected"})
    assert r.status_code == 200 and Index(root).get("ocean", "waves")["status"] == "rejected"
    assert 'data-status="rejected"' in client.get("/report/index.html").text


@pytest.mark.parametrize("body, code", [
    ({"scene": "forest", "asset": "nope", "version": 1, "status": "approved"}, 404),
    ({"scene": "forest", "asset": "birds", "version": 9, "status": "approved"}, 404),
    ({"scene": "forest", "asset": "birds", "version": 1, "status": "shipped"}, 422),
])
def test_bad_status_requests(client: TestClient, root: Path, body: dict, code: int) -> None:
    r = client.post("/_review/status", json=body)
    assert r.status_code == code
    assert {row["status"] for row in Index(root).rows()} == {"rendered"}


def test_cross_origin_and_non_json_refused(client: TestClient, root: Path) -> None:
    body = {"scene": "forest", "asset": "birds", "status": "approved"}
    assert client.post("/_review/status", json=body, headers={"Origin": "https://evil.example"}).status_code == 403
    assert client.post("/_review/status", content='{"scene": "forest", "asset": "birds", "status": "approved"}',
                       headers={"Content-Type": "text/plain"}).status_code in (415, 422)
    assert Index(root).get("forest", "birds")["status"] == "rendered"


def test_locked_root_gives_409(client: TestClient, root: Path) -> None:
    body = {"scene": "forest", "asset": "birds", "version": 2, "status": "approved"}
    with root_lock(root, wait=False):  # what a render holds while it writes
        t0 = time.monotonic()
        r = client.post("/_review/status", json=body)
        assert r.status_code == 409 and "render" in r.json()["detail"]
        assert time.monotonic() - t0 >= 0.3  # waited briefly before giving up
    assert Index(root).get("forest", "birds")["status"] == "rendered"
    assert client.post("/_review/status", json=body).status_code == 200  # lock released: goes through


def test_lock_released_during_wait_succeeds(root: Path) -> None:
    client = TestClient(create_app(root, lock_wait_s=5.0), base_url=LOCAL)
    held, release = threading.Event(), threading.Event()

    def render() -> None:
        with root_lock(root, wait=False):
            held.set()
            release.wait(5)

    t = threading.Thread(target=render)
    t.start()
    held.wait(5)
    threading.Timer(0.4, release.set).start()
    r = client.post("/_review/status", json={"scene": "ocean", "asset": "waves", "status": "approved"})
    t.join()
    assert r.status_code == 200 and Index(root).get("ocean", "waves")["status"] == "approved"


@pytest.mark.parametrize("rel", ["../secret.wav", "/etc/passwd", "forest/../../secret.wav", "a\\..\\b.wav",
                                 "forest/./birds/birds_v001.wav", "x\0.wav"])
def test_resolve_under_refuses_escapes(root: Path, rel: str) -> None:
    with pytest.raises(UnsafePath):
        resolve_under(root, rel)


def test_resolve_under_only_serves_media_inside_root(root: Path, tmp_path: Path) -> None:
    assert resolve_under(root, "forest/birds/birds_v001.wav") == (root / "forest/birds/birds_v001.wav").resolve()
    assert resolve_under(root, "index.sqlite") is None  # not a served type
    assert resolve_under(root, "forest/birds/none.wav") is None
    (root / "link.wav").symlink_to(tmp_path / "secret.wav")  # symlink pointing out of ROOT
    assert resolve_under(root, "link.wav") is None


@pytest.fixture
def server(root: Path):
    """The app on a real uvicorn server (raw request paths are not normalised by a client library)."""
    with serve_in_thread(create_app(root)) as port:
        yield port


def _raw_get(port: int, target: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("GET", target, skip_host=False, skip_accept_encoding=True)
    conn.endheaders()
    resp = conn.getresponse()
    return resp.status, resp.read()


@pytest.mark.parametrize("target", [
    "/../secret.wav", "/forest/../../secret.wav", "/%2e%2e/secret.wav", "/%2E%2E%2Fsecret.wav",
    "/forest/%2e%2e/%2e%2e/secret.wav", "//etc/passwd", "/%2Fetc%2Fpasswd", "/..%5csecret.wav",
    "/%252e%252e/secret.wav", "/index.sqlite", "/report/%00.html",
])
def test_http_paths_outside_root_refused(server: int, target: str) -> None:
    status, body = _raw_get(server, target)
    assert status in (400, 404), (target, status)
    assert b"outside ROOT" not in body and b"root:" not in body


def test_http_serves_files_inside_root(server: int) -> None:
    status, body = _raw_get(server, "/forest/birds/birds_v001.wav")
    assert status == 200 and body[:4] == b"RIFF"
    status, body = _raw_get(server, "/report/index.html")
    assert status == 200 and b"forest" in body


# -- DNS rebinding: only the Host names the server answers to --------------------------------------------
EVIL = {"host": "evil.example:8765", "origin": "http://evil.example:8765"}


@pytest.mark.parametrize("method, path", [
    ("GET", "/"), ("GET", "/report/index.html"), ("GET", "/forest/birds/birds_v001.wav"),
    ("GET", "/_review/health"), ("GET", "/no/such/file.wav"), ("POST", "/_review/status"),
])
def test_rebound_host_refused_on_every_route(client: TestClient, root: Path, method: str, path: str) -> None:
    body = {"scene": "forest", "asset": "birds", "version": 1, "status": "approved"}
    r = client.request(method, path, headers=EVIL, json=body if method == "POST" else None)
    assert r.status_code == 421, (path, r.status_code)
    assert "evil.example" in r.json()["detail"] and "--allowed-host" in r.json()["detail"]
    assert b"RIFF" not in r.content
    assert {row["status"] for row in Index(root).rows()} == {"rendered"}


def test_allowed_hosts_and_port(root: Path) -> None:
    app = create_app(root, allowed_hosts=["studio.lan", "Mixer.Local:8765", "[fe80::1]"], port=8765)
    for base in ("http://studio.lan:8765", "http://mixer.local:8765", "http://[fe80::1]:8765", "http://localhost:8765",
                 "http://[::1]:8765", LOCAL):
        assert TestClient(app, base_url=base).get("/_review/health").status_code == 200, base
    assert TestClient(app, base_url="http://127.0.0.1:9999").get("/_review/health").status_code == 421
    assert TestClient(app, base_url="http://other.lan:8765").get("/_review/health").status_code == 421
    bound = create_app(root, bind_host="192.168.1.5")
    assert TestClient(bound, base_url="http://192.168.1.5:1").get("/_review/health").status_code == 200
    wildcard = create_app(root, bind_host="0.0.0.0")  # what `review --host 0.0.0.0` prints still works
    assert TestClient(wildcard, base_url="http://0.0.0.0:1").get("/_review/health").status_code == 200
    assert TestClient(wildcard, base_url="http://myhost:1").get("/_review/health").status_code == 421


@pytest.mark.parametrize("host, ok", [
    ("127.0.0.1:8765", True), ("localhost:8765", True), ("[::1]:8765", True), ("LOCALHOST:8765", True),
    ("127.0.0.1", False), ("127.0.0.1.evil.example:8765", False), ("evil@127.0.0.1:8765", False),
    ("127.0.0.1:99999", False), ("127.0.0.1:x", False), ("localhost.:8765", False), ("", False), (None, False),
    ("127.0.0.1:8765/x", False), ("::1:8765", False),
])
def test_host_allowed(host, ok: bool) -> None:
    from assetgen.report.review import host_allowed, host_names

    assert host_allowed(host, host_names(), port=8765) is ok


def test_http_server_refuses_rebound_host(server: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    conn.request("GET", "/forest/birds/birds_v001.wav", headers={"Host": f"evil.example:{server}"})
    resp = conn.getresponse()
    assert resp.status == 421 and b"RIFF" not in resp.read()


@pytest.mark.parametrize("version", [1e23, -1, 0, True, 1.5, 1.0, 2**63, 10**30, "1", [1], {"v": 1}])
def test_absurd_versions_are_422(client: TestClient, root: Path, version) -> None:
    r = client.post("/_review/status", json={"scene": "forest", "asset": "birds", "version": version,
                                             "status": "approved"})
    assert r.status_code == 422, (version, r.status_code, r.text)
    assert {row["status"] for row in Index(root).rows()} == {"rendered"}


@pytest.mark.parametrize("body", [
    {"scene": "forest", "asset": "birds", "status": "approved", "extra": 1},
    {"scene": 1, "asset": "birds", "status": "approved"},
    {"scene": "forest", "asset": "birds", "status": "approved", "force": "yes", "reason": "x"},
    {"scene": "forest", "asset": "birds", "status": "approved", "force": True, "reason": "x" * 501},
    {"scene": "x" * 300, "asset": "birds", "status": "approved"},
])
def test_malformed_status_requests_are_422(client: TestClient, root: Path, body: dict) -> None:
    assert client.post("/_review/status", json=body).status_code == 422
    assert {row["status"] for row in Index(root).rows()} == {"rendered"}


# -- approval discipline ---------------------------------------------------------------------------------
def test_blocked_approval_needs_force_and_reason(client: TestClient, root: Path, monkeypatch) -> None:
    from assetgen.report.approval import read_overrides

    monkeypatch.setenv("ASSETGEN_USER", "mara")
    add_asset(root, "forest", "wind", tone(freq=200), placeholder=1, audio_status="silent")
    body = {"scene": "forest", "asset": "wind", "version": 1, "status": "approved"}
    r = client.post("/_review/status", json=body)
    assert r.status_code == 409
    assert r.json()["detail"]["blockers"] == ["placeholder audio (tiny random-weight model)", "audio status 'silent'"]
    r = client.post("/_review/status", json=body | {"force": True, "reason": "  "})
    assert r.status_code == 409 and "needs a reason" in r.json()["detail"]["message"]
    assert Index(root).get("forest", "wind")["status"] == "rendered" and read_overrides(root) == []

    assert client.post("/_review/status", json=body | {"status": "rejected"}).status_code == 200  # no blockers
    r = client.post("/_review/status", json=body | {"force": True, "reason": "temp audio for the vertical slice"})
    assert r.status_code == 200 and Index(root).get("forest", "wind")["status"] == "approved"
    [entry] = read_overrides(root)
    row = Index(root).get("forest", "wind")
    assert (entry["user"], entry["reason"], entry["via"]) == ("mara", "temp audio for the vertical slice", "review")
    assert (entry["scene"], entry["asset"], entry["version"], entry["sha256"]) == ("forest", "wind", 1, row["sha256"])
    assert entry["blockers"] == ["placeholder audio (tiny random-weight model)", "audio status 'silent'"]
    # an unblocked take is approved without force and without a journal entry
    waves = {"scene": "ocean", "asset": "waves", "status": "approved"}
    assert client.post("/_review/status", json=waves).status_code == 200
    assert len(read_overrides(root)) == 1


def test_page_shows_blockers(client: TestClient, root: Path) -> None:
    add_asset(root, "forest", "wind", tone(freq=200), placeholder=1)
    html = client.get("/report/index.html").text
    assert 'data-blockers="placeholder audio (tiny random-weight model)"' in html
    assert "needs a confirmation: placeholder audio" in html
