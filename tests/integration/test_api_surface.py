"""The API's HTTP surface over the wire: methods and Allow, offline docs, instants in queries, what
/v1/workers shows a tenant, and a tenant's last admin key."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urljoin, urlparse

import httpx
import pytest

from tests.helpers import assert_problem, bearer, new_api_key

pytestmark = pytest.mark.integration

SOME_UUID = "0190a0a0-0000-7000-8000-000000000000"


def _allow(resp: httpx.Response) -> set[str]:
    return {m.strip() for m in resp.headers["allow"].split(",")}


def test_a_wrong_method_is_405_with_allow(client):
    cases = {
        ("GET", "/v1/models/upload"): {"POST", "OPTIONS"},  # not a 422 from GET /v1/models/{model_id}
        ("PUT", "/v1/forget-requests"): {"GET", "POST", "OPTIONS"},  # every route of the path, not the first
        ("DELETE", f"/v1/models/{SOME_UUID}"): {"GET", "OPTIONS"},
        ("POST", "/healthz"): {"GET", "OPTIONS"},
    }
    for (method, path), allowed in cases.items():
        resp = client.request(method, path)
        assert_problem(resp, 405, "method-not-allowed")
        assert _allow(resp) == allowed, (method, path, resp.headers)


def test_options_answers_with_allow(client):
    for path, allowed in {
        "/v1/models": {"GET", "POST", "OPTIONS"},
        "/v1/models/upload": {"POST", "OPTIONS"},
        f"/v1/models/{SOME_UUID}": {"GET", "OPTIONS"},
    }.items():
        resp = httpx.options(client.base_url.join(path))  # no key needed to ask
        assert resp.status_code == 204 and resp.content == b"", (path, resp.status_code, resp.text)
        assert _allow(resp) == allowed, (path, resp.headers)
    assert_problem(httpx.options(client.base_url.join("/v1/nothing-here")), 404)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_load_only_same_origin_assets(api_url, page):
    resp = httpx.get(api_url + page)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", resp.text)
    urls += re.findall(r"""(?:url|spec-url)\s*[:=]\s*["']([^"']+)["']""", resp.text)
    assert len(urls) >= 3, resp.text
    assert "http://" not in resp.text and "https://" not in resp.text and "//cdn" not in resp.text
    for url in urls:
        absolute = urljoin(api_url + page, url)
        assert urlparse(absolute).netloc == urlparse(api_url).netloc, url
        asset = httpx.get(absolute)
        assert asset.status_code == 200 and len(asset.content) > 100, (url, asset.status_code)
    scripts = [u for u in urls if u.endswith(".js")]
    assert scripts and all(
        httpx.get(urljoin(api_url, u)).headers["content-type"].startswith(("application/javascript", "text/javascript"))
        for u in scripts
    )


def test_audit_instants_are_iso_8601_with_a_zone(client):
    for value in ("0.5", "0", "1700000000", "2024-05-01T12:00:00", "2024-05-01"):
        body = assert_problem(client.get("/v1/audit-events", params={"until": value}), 422, "validation-error")
        assert body["errors"][0]["loc"][-1] == "until", body
        assert "time zone" in body["detail"] or "timezone" in body["detail"], body
    for value in ("2999-01-01T00:00:00Z", "2999-01-01T02:00:00+02:00", "2999-01-01 00:00:00+00:00"):
        resp = client.get("/v1/audit-events", params={"until": value, "page_size": 1})
        assert resp.status_code == 200 and len(resp.json()["items"]) == 1, resp.text
    resp = client.get("/v1/audit-events", params={"since": "2999-01-01T00:00:00Z"})
    assert resp.status_code == 200 and resp.json()["items"] == []
    params = client.get("/openapi.json").json()["paths"]["/v1/audit-events"]["get"]["parameters"]
    until = next(p for p in params if p["name"] == "until")
    assert "ISO 8601" in until["description"] and "Unix" in until["description"]


def test_workers_show_no_host_or_pid_to_a_tenant(client):
    resp = client.get("/v1/workers")
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert len(items) >= 1  # the session's worker
    for worker in items:
        assert "hostname" not in worker and "pid" not in worker, worker
        assert worker["name"] and worker["queues"] and worker["last_beat_at"] and "busy" in worker
    schema = client.get("/openapi.json").json()["components"]["schemas"]["WorkerOut"]["properties"]
    assert "hostname" not in schema and "pid" not in schema


def test_a_tenants_last_admin_key_cannot_be_revoked(api_url, stack_env):
    tenant = f"lastadmin-{uuid.uuid4().hex[:8]}"
    first = new_api_key(tenant, ["admin"], name="first")
    with httpx.Client(base_url=api_url, timeout=30, headers=bearer(first)) as c:
        keys = c.get("/v1/api-keys").json()["items"]
        assert len(keys) == 1
        first_id = keys[0]["id"]
        reader = c.post("/v1/api-keys", json={"name": "reader", "scopes": ["models:read"]}).json()
        body = assert_problem(c.post(f"/v1/api-keys/{first_id}/revoke"), 409, "conflict")
        assert "last active admin key" in body["detail"], body
        assert c.get(f"/v1/api-keys/{first_id}").json()["revoked_at"] is None
        assert c.get("/v1/api-keys").status_code == 200  # still works
        assert c.post(f"/v1/api-keys/{reader['id']}/revoke").status_code == 200  # not an admin key: fine
        second = c.post("/v1/api-keys", json={"name": "second", "scopes": ["admin"]})
        assert second.status_code == 201, second.text
        assert c.post(f"/v1/api-keys/{first_id}/revoke").status_code == 200  # another admin remains
    with httpx.Client(base_url=api_url, timeout=30, headers=bearer(second.json()["secret"])) as c:
        assert_problem(c.post(f"/v1/api-keys/{second.json()['id']}/revoke"), 409, "conflict")
        assert c.get("/v1/api-keys").status_code == 200
