"""The scoring API's edges, probed from outside: its OpenAPI contract fuzzed by schemathesis (a client nobody here
wrote), /metrics behind its token with bounded series, the docs page offline, rates counted in leads, and bodies
the service takes no part of (multipart on /admin/reload)."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from infra.config import Settings
from tests.integration.serving_support import create_key, ensure_champion, post, serving

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def service(settings: Settings, stack_env_vars: dict[str, str], applied_store, tmp_path_factory):  # noqa: ANN001, ANN201
    ensure_champion(settings, stack_env_vars)
    keys = {"fuzz": create_key(stack_env_vars, "it-fuzz", "--rate", "100000"),
            "admin": create_key(stack_env_vars, "admin"),
            "small": create_key(stack_env_vars, "it-small", "--rate", "10")}
    log = tmp_path_factory.mktemp("edges") / "serve.log"
    with serving(stack_env_vars, settings.serving_port, log) as url:
        yield {"url": url, "keys": keys, "log": log, "token": settings.secret("metrics_token")}


def _series(text: str) -> set[str]:
    return {line.split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_the_openapi_document_declares_the_key_scheme_every_status_and_the_models_features(service) -> None:  # noqa: ANN001
    doc = httpx.get(f"{service['url']}/docs.json").json()
    assert doc["components"]["securitySchemes"]["bearerKey"] == {
        "type": "http", "scheme": "bearer", "description": "an API key: ls_<id>_<secret>"}
    score = doc["paths"]["/score"]["post"]
    assert {"bearerKey": []} in score["security"]
    assert set(score["responses"]) == {"200", "400", "401", "403", "404", "413", "422", "429", "503"}
    assert "500" not in {code for ops in doc["paths"].values() for op in ops.values() for code in op["responses"]}
    features = doc["components"]["schemas"]["LeadInput"]["properties"]["features"]
    assert features["additionalProperties"] is False
    assert features["properties"]["total_visits"]["type"] == "number"
    assert features["properties"]["do_not_email"]["type"] == "boolean"
    assert features["properties"]["time_on_website_s"]["minimum"] == 0


def test_the_docs_page_loads_nothing_from_outside_the_machine(service) -> None:  # noqa: ANN001
    page = httpx.get(f"{service['url']}/")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert not re.search(r"https?://", page.text), "the page names an outside address"
    for ref in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        asset = httpx.get(f"{service['url']}/{ref.removeprefix('./')}")
        assert asset.status_code == 200, ref
        assert "googletagmanager" not in asset.text
    assert "validatorUrl: null" in httpx.get(f"{service['url']}/docs-init.js").text  # no badge from swagger.io


def test_metrics_need_the_token_and_unknown_paths_add_no_series(service) -> None:  # noqa: ANN001
    url, auth = service["url"], {"Authorization": f"Bearer {service['token']}"}
    assert httpx.get(f"{url}/metrics").status_code == 401
    assert httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    key = {"Authorization": f"Bearer {service['keys']['fuzz']}"}
    with httpx.Client(base_url=url, headers=key) as client:
        for i in range(5):  # the labels '(other)' and '/consent/{lead_id}' exist from here on
            client.get(f"/no-such-{i}")
            client.get(f"/consent/it-edges-{i}")
        before = httpx.get(f"{url}/metrics", headers=auth).text
        for _ in range(500):
            client.get(f"/{secrets.token_hex(8)}")
            client.get(f"/consent/it-edges-{secrets.token_hex(8)}")
    after = httpx.get(f"{url}/metrics", headers=auth).text
    assert _series(after) == _series(before), sorted(_series(after) - _series(before))[:10]
    assert 'endpoint="(other)"' in after and "it-edges-" not in after


def test_a_rank_costs_its_leads_against_the_keys_rate(service) -> None:  # noqa: ANN001
    url, key = service["url"], service["keys"]["small"]  # 10 leads/s, burst derived: 20
    leads = [{"lead_id": f"it-edges-lead-{i}"} for i in range(20)]
    assert post(url, "/rank", {"leads": leads}, key).status_code == 200
    limited = post(url, "/score", {"lead_id": "it-edges-lead-0"}, key)
    assert limited.status_code == 429 and "10 leads/s (burst 20)" in limited.json()["reason"]
    assert int(limited.headers["Retry-After"]) >= 1


def test_reload_takes_no_body_so_a_multipart_without_boundary_is_no_500(service) -> None:  # noqa: ANN001
    url = service["url"]
    headers = {"Content-Type": "multipart/form-data"}
    r = httpx.post(f"{url}/admin/reload", content=b"--x\r\n", headers=headers)
    assert r.status_code == 401
    r = httpx.post(f"{url}/admin/reload", content=b"--x\r\n",
                   headers={**headers, "Authorization": f"Bearer {service['keys']['admin']}"})
    assert r.status_code == 200 and "model_version" in r.json()
    assert "Traceback" not in Path(service["log"]).read_text()


def test_schemathesis_finds_no_server_error_and_no_response_outside_the_contract(service, tmp_path) -> None:  # noqa: ANN001
    """Every check on, bounded examples; the key holds the 'score' scope only, so the consent and privacy routes are
    fuzzed up to their validation and scope checks and never change a lead's consent on the shared stack."""
    cli = Path(sys.executable).parent / "schemathesis"
    done = subprocess.run(
        [str(cli), "run", f"{service['url']}/docs.json", "--checks", "all", "--max-examples", "30", "--seed", "7",
         "--workers", "1", "--phases", "examples,coverage,fuzzing", "--generation-database", "none",
         "--request-timeout", "30", "-H", f"Authorization: Bearer {service['keys']['fuzz']}", "--no-color",
         "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "Traceback" not in Path(service["log"]).read_text()


def test_a_persons_signed_token_is_taken_beside_keys_within_its_role(service, settings, stack_env_vars) -> None:  # noqa: ANN001
    import psycopg

    from tests.integration.serving_support import run_ok

    with psycopg.connect(settings.pg_dsn()) as conn:
        lead = conn.execute("SELECT lead_id FROM offline.xeducation ORDER BY lead_id LIMIT 1").fetchone()[0]
    broker = run_ok(["serve", "token", "--subject", "asha@it-edges", "--tenant", "default", "--role", "broker",
                     "--broker", "asha", "--ttl", "30m"], stack_env_vars).strip().splitlines()[-1]
    scored = post(service["url"], "/score", {"lead_id": lead}, broker)
    assert scored.status_code == 200 and 0 < scored.json()["score"] < 1
    officer = run_ok(["serve", "token", "--subject", "dpo@it-edges", "--tenant", "default", "--role",
                      "privacy_officer"], stack_env_vars).strip().splitlines()[-1]
    denied = post(service["url"], "/score", {"lead_id": lead}, officer)
    assert denied.status_code == 403 and "'score' scope" in denied.json()["reason"]
    head, body, sig = broker.split(".")
    assert post(service["url"], "/score", {"lead_id": lead}, f"{head}.{body}.{sig[:-3]}abc").status_code == 401


def test_a_chunked_body_without_length_is_bounded_on_every_route(service) -> None:  # noqa: ANN001
    """No Content-Length to refuse early: the guard counts what arrives, on the privacy routes too."""
    auth = {"Authorization": f"Bearer {service['keys']['fuzz']}", "Content-Type": "application/json"}

    def chunks(total: int):  # noqa: ANN202 - a generator: httpx sends it chunked
        yield b'{"lead_ids": ["'
        for _ in range(total // 65536):
            yield b"x" * 65536
        yield b'"], "purpose": "scoring", "granted": false}'

    for path in ("/consent", "/privacy/erasure", "/rank"):
        r = httpx.post(f"{service['url']}{path}", content=chunks(3_000_000), headers=auth, timeout=60)
        assert r.status_code == 413 and "limit" in r.json()["errors"][0]["reason"], (path, r.text[:300])
    small = httpx.post(f"{service['url']}/consent", content=iter([b'{"lead_ids": ["it-edges-chunked"], ',
                                                                b'"purpose": "scoring", "granted": true}']),
                       headers=auth, timeout=60)
    assert small.status_code == 403 and "'consent' scope" in small.json()["reason"]  # read whole, then the key
