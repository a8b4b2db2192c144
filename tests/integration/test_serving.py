"""The scoring service over real HTTP: the real `leadscore serve` process against the session's real stack."""

from __future__ import annotations

import json
import time

import httpx
import psycopg
import pytest

from infra.config import Settings
from tests.integration.serving_support import MODEL, create_key, ensure_champion, post, serving, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NEW_LEAD = "it-serving-new-lead"
UNSTORED = ["no-such-lead-42", "no-such-lead-7", "it-no-such-lead"]  # scoring consent on record, no stored row


@pytest.fixture(scope="module")
def champion(settings: Settings, stack_env_vars: dict[str, str], applied_store) -> str:  # noqa: ANN001
    version = ensure_champion(settings, stack_env_vars)
    with psycopg.connect(settings.pg_dsn()) as conn:
        for lead in [NEW_LEAD, *UNSTORED]:
            conn.execute("INSERT INTO compliance.consent (lead_id, purpose, granted, source) VALUES (%s, 'scoring', "
                         "true, 'test') ON CONFLICT (lead_id, purpose) DO UPDATE SET granted = true", (lead,))
    return version


@pytest.fixture(scope="module")
def leads(settings: Settings, champion: str) -> list[str]:
    with psycopg.connect(settings.pg_dsn()) as conn:
        return [r[0] for r in conn.execute("SELECT lead_id FROM offline.xeducation ORDER BY lead_id LIMIT 1200")]


@pytest.fixture(scope="module")
def keys(stack_env_vars: dict[str, str], champion: str) -> dict[str, str]:
    env = stack_env_vars
    return {"main": create_key(env, "it-broker", "--rate", "100000", "--burst", "100000"),
            "admin": create_key(env, "admin"),
            "slow": create_key(env, "it-slow", "--rate", "0.5", "--burst", "2"),
            "revoked": create_key(env, "it-revoked")}


@pytest.fixture(scope="module")
def url(stack_env_vars: dict[str, str], settings: Settings, champion: str, keys, tmp_path_factory) -> str:  # noqa: ANN001
    log = tmp_path_factory.mktemp("serving") / "serve.log"
    with serving(stack_env_vars, settings.serving_port, log) as base:
        yield base


@pytest.fixture(scope="module")
def scorer(settings: Settings, champion: str):  # noqa: ANN201 - the champion's LeadScorerEnsemble, in-process
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    return mlflow.pyfunc.load_model(f"models:/{MODEL}/{champion}").unwrap_python_model()


def test_score_returns_the_calibrated_score_tier_members_and_an_explanation(url: str, keys, leads, champion,
                                                                           scorer, settings, applied_store) -> None:  # noqa: ANN001
    from pipelines.online import OnlineReader

    row = OnlineReader(applied_store, "xeducation_v1").read([leads[0]])[0]
    frame = __import__("pandas").DataFrame([{f: row[f] for f in scorer.feature_names}])
    logits = scorer.member_logits(frame)
    for method in ("path", "shap"):  # the default, tree-path attributions; tree SHAP on request
        payload = {"lead_id": leads[0], "top_k": 20, **({"explain": method} if method == "shap" else {})}
        r = post(url, "/score", payload, keys["main"])
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["lead_id"] == leads[0] and body["model_version"] == champion and body["explained_by"] == method
        assert body["feature_service"] == "xeducation_v1" and body["tier"] in "ABCD"
        assert 0 < body["score"] < 1 and 0 <= body["confidence"] <= 1
        assert {m["name"]: m["weight"] for m in body["members"]} == pytest.approx(scorer.weights)
        assert body["explanation"].startswith(f"Tier {body['tier']} (score {body['score']:.2f})")
        # the same lead in-process: same score, same contributions, and they add up to the stacked log-odds
        served = scorer.score_records([{f: row[f] for f in scorer.feature_names}], method=None)["score"][0]
        assert body["score"] == pytest.approx(float(served), rel=1e-12)
        # the members' own predict calls (pyfunc's path) agree to float32 rounding
        assert body["score"] == pytest.approx(float(scorer.score(frame)["score"].iloc[0]), abs=1e-6)
        exp = scorer.explain(frame, top_k=20, method=method)[0]
        assert [c["feature"] for c in body["top_positive"]] == [f for f, _, _ in exp["top_positive"]]
        assert [c["contribution"] for c in body["top_negative"]] == pytest.approx([c for _, _, c in
                                                                                   exp["top_negative"]])
        total = exp["base_value"] + sum(exp["contributions"].values()) + exp["unattributed"]
        assert total == pytest.approx(float(scorer.stacked_logit(logits)[0]), abs=1e-6)
        shown = sum(c["contribution"] for c in body["top_positive"] + body["top_negative"])
        assert body["base_value"] + shown + body["unattributed"] == pytest.approx(total, abs=1e-6)  # 20 + 20 = all
        for c in body["top_positive"]:
            assert c["contribution"] > 0 and (c["value"] == row[c["feature"]] or c["value"] is None)
    for method in ("shap", "path"):  # each booster's own attribution reproduces its margin
        contribs, base = scorer._contributions("xgboost", scorer.encode(frame), method=method)
        assert contribs.sum() + base[0] == pytest.approx(float(logits["xgboost"][0]), abs=1e-4)
    bad = post(url, "/score", {"lead_id": leads[0], "explain": "lime"}, keys["main"])
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "explain"


def test_inline_fields_override_stored_ones_and_score_a_lead_not_in_the_store(url: str, keys, leads) -> None:  # noqa: ANN001
    base = post(url, "/score", {"lead_id": leads[1]}, keys["main"]).json()
    hot = post(url, "/score", {"lead_id": leads[1], "features": {"time_on_website_s": 2000, "total_visits": 12}},
               keys["main"]).json()
    assert hot["score"] != base["score"]
    new = post(url, "/score", {"lead_id": NEW_LEAD, "features": {"lead_origin": "Lead Add Form", "total_visits": 3}},
               keys["main"])
    assert new.status_code == 200, new.text
    assert new.json()["missing_features"] > 10 and new.json()["confidence"] < hot["confidence"]


def test_unknown_lead_without_inline_data_is_404_and_without_consent_403(url: str, keys) -> None:  # noqa: ANN001
    r = post(url, "/score", {"lead_id": "no-such-lead-42"}, keys["main"])
    assert r.status_code == 404 and r.json()["lead_id"] == "no-such-lead-42" and "inline" in r.json()["reason"]
    # consent is asked first: a lead with none on record (never seen, or withdrawn and deleted) hears so
    r = post(url, "/score", {"lead_id": "it-never-consented"}, keys["main"])
    assert r.status_code == 403 and "consent" in r.json()["error"]


def test_a_lead_without_scoring_consent_gets_403_and_an_audit_record(url: str, keys, leads, settings) -> None:  # noqa: ANN001
    lead = leads[2]
    assert post(url, "/score", {"lead_id": lead}, keys["main"]).status_code == 200
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        conn.execute("UPDATE compliance.consent SET granted = false WHERE lead_id = %s AND purpose = 'scoring'",
                     (lead,))
        try:
            time.sleep(0.5)  # the service caches consent for LEADSCORE_CONSENT_TTL_S (0.3 s here)
            r = post(url, "/score", {"lead_id": lead}, keys["main"])
            assert r.status_code == 403 and "consent" in r.json()["error"] and "score" not in r.json()
            ranked = post(url, "/rank", {"leads": [{"lead_id": lead}, {"lead_id": leads[3]}]}, keys["main"]).json()
            assert [x["lead_id"] for x in ranked["results"]] == [leads[3]]
            assert ranked["refused"][0]["lead_id"] == lead
            audit = wait_for(lambda: conn.execute(
                "SELECT actor, detail FROM compliance.audit_log WHERE lead_id = %s AND action = 'refuse' AND "
                "purpose = 'scoring' ORDER BY id", (lead,)).fetchall() or None)
            assert {row[1]["endpoint"] for row in audit} >= {"score"} and audit[0][1]["tenant"] == "default"
            assert audit[0][0].startswith("api_key:")
        finally:
            conn.execute("UPDATE compliance.consent SET granted = true WHERE lead_id = %s AND purpose = 'scoring'",
                         (lead,))


@pytest.mark.parametrize(("body", "status", "field", "reason"), [
    ({"lead_id": "x", "colour": "red"}, 422, "colour", "Extra inputs"),
    ({"lead_id": 42}, 422, "lead_id", "valid string"),
    ({"lead_id": "x", "top_k": 0}, 422, "top_k", "greater than or equal to 1"),
    ({"lead_id": "a b"}, 422, "lead_id", "pattern"),
    ({"lead_id": "x", "features": {"total_visits": "many"}}, 422, "features.total_visits", "expected a number"),
    ({"lead_id": "x", "features": {"total_visits": True}}, 422, "features.total_visits", "got true"),
    ({"lead_id": "x", "features": {"do_not_email": 1}}, 422, "features.do_not_email", "expected true or false"),
    ({"lead_id": "x", "features": {"total_visits": 10**400}}, 422, "features.total_visits", "too large"),
    ({"lead_id": "x", "top_k": "3"}, 422, "top_k", "valid integer"),
    ({"leads": [{"lead_id": "x"}], "rerank": "yes"}, 422, "rerank", "valid boolean"),
    ({"leads": [{"lead_id": "x"}, {"lead_id": "y"}, {"lead_id": "x", "features": {"total_visits": 2}}]}, 409,
     "leads[2].lead_id", "leads[0]"),
    ({"lead_id": "x", "features": {"time_on_website_s": -1}}, 422, "features.time_on_website_s", "out of range"),
    ({"lead_id": "x", "features": {"shoe_size": 9}}, 422, "features.shoe_size", "unknown feature"),
    ({"leads": []}, 422, "leads", "at least 1"),
])
def test_bad_input_gets_a_4xx_naming_the_field_and_the_reason(url: str, keys, body, status, field, reason) -> None:  # noqa: ANN001
    path = "/rank" if "leads" in body else "/score"
    r = post(url, path, body, keys["main"])
    assert r.status_code == status, r.text
    errors = r.json()["errors"]
    assert any(e["field"] == field and reason in e["reason"] for e in errors), errors


def test_malformed_json_oversize_bodies_and_too_many_leads_are_refused(url: str, keys) -> None:  # noqa: ANN001
    headers = {"Authorization": f"Bearer {keys['main']}", "Content-Type": "application/json"}
    r = httpx.post(f"{url}/score", content=b'{"lead_id": ', headers=headers)
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    r = httpx.post(f"{url}/rank", content=b"{" + b" " * 2_100_000 + b"}", headers=headers)
    assert r.status_code == 413 and "limit" in r.json()["errors"][0]["reason"]
    r = post(url, "/rank", {"leads": [{"lead_id": f"L{i}"} for i in range(10_001)]}, keys["main"])
    assert r.status_code in (413, 422)


def test_keys_are_required_hashed_revocable_and_rate_limited(url: str, keys, leads, settings, stack_env_vars) -> None:  # noqa: ANN001
    assert post(url, "/score", {"lead_id": leads[0]}, None).status_code == 401
    assert post(url, "/score", {"lead_id": leads[0]}, keys["main"] + "x").status_code == 401
    with psycopg.connect(settings.pg_dsn()) as conn:
        stored = [r[0] for r in conn.execute("SELECT secret_hmac FROM serving.api_keys").fetchall()]
    assert all(k.split("_")[2] not in s for k in keys.values() for s in stored)
    assert post(url, "/score", {"lead_id": leads[0]}, keys["revoked"]).status_code == 200
    from tests.integration.serving_support import run_ok

    run_ok(["serve", "keys", "revoke", keys["revoked"].split("_")[1]], stack_env_vars)
    time.sleep(0.5)
    assert post(url, "/score", {"lead_id": leads[0]}, keys["revoked"]).status_code == 401
    statuses = [post(url, "/score", {"lead_id": leads[0]}, keys["slow"]) for _ in range(5)]
    assert [s.status_code for s in statuses[:2]] == [200, 200]
    limited = [s for s in statuses if s.status_code == 429]
    assert limited and int(limited[0].headers["Retry-After"]) >= 1


def test_rank_orders_a_thousand_leads_best_first_in_one_call(url: str, keys, leads) -> None:  # noqa: ANN001
    batch = [{"lead_id": lead} for lead in leads[:1000]] + [{"lead_id": "no-such-lead-7"}]
    r = post(url, "/rank", {"leads": batch}, keys["main"])
    assert r.status_code == 200, r.text
    body = r.json()
    scores = [x["score"] for x in body["results"]]
    assert len(scores) == 1000 and scores == sorted(scores, reverse=True)
    assert [x["rank"] for x in body["results"]] == list(range(1, 1001))
    assert body["not_found"] == [{"lead_id": "no-such-lead-7", "reason": body["not_found"][0]["reason"]}]
    one = post(url, "/score", {"lead_id": body["results"][0]["lead_id"]}, keys["main"]).json()
    # the same lead alone and in a batch of 1,000: the PyTorch member's float32 matrix products take other kernels
    # for other batch shapes, so the scores agree to float32 rounding, not bit for bit (seen: 1.3e-9 apart)
    assert one["score"] == pytest.approx(body["results"][0]["ensemble_score"], rel=1e-6)
    top = post(url, "/rank", {"leads": batch, "limit": 10}, keys["main"]).json()["results"]
    assert [x["lead_id"] for x in top] == [x["lead_id"] for x in body["results"][:10]]


def test_every_score_lands_in_the_prediction_log_with_the_features_it_was_computed_from(
        url: str, keys, leads, settings, champion, scorer, applied_store) -> None:  # noqa: ANN001
    from pipelines.online import OnlineReader

    lead, ranked = leads[5], leads[6]
    numeric = "total_visits"  # a float feature of the spec (a yes/no feature would refuse 7.0: strict types)
    assert numeric in scorer.feature_names and numeric not in scorer.categorical_features
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:  # rows other tests left are older than this
        before = conn.execute("SELECT coalesce(max(id), 0) FROM serving.prediction_log").fetchone()[0]
    assert post(url, "/score", {"lead_id": lead, "features": {numeric: 7.0}}, keys["main"]).status_code == 200
    assert post(url, "/rank", {"leads": [{"lead_id": ranked}]}, keys["main"]).status_code == 200
    with psycopg.connect(settings.pg_dsn(), autocommit=True) as conn:
        row = wait_for(lambda: conn.execute(
            "SELECT endpoint, tenant, model_name, model_version, score, tier, inline_features, features "
            "FROM serving.prediction_log WHERE lead_id = %s AND endpoint = 'score' AND id > %s ORDER BY id DESC "
            "LIMIT 1", (lead, before)).fetchone())
        rank_row = wait_for(lambda: conn.execute(
            "SELECT score, features FROM serving.prediction_log WHERE lead_id = %s AND endpoint = 'rank' AND id > %s "
            "ORDER BY id DESC LIMIT 1", (ranked, before)).fetchone())
    assert row[:4] == ("score", "default", MODEL, champion) and 0 < row[4] < 1 and row[5] in "ABCD"
    # what the model scored: the stored row with the inline value over it, and the score it gave that row
    stored = OnlineReader(applied_store, "xeducation_v1").read([lead, ranked])
    logged, expected = row[7], {**stored[0], numeric: 7.0}
    assert row[6] == 1 and set(scorer.feature_names) <= set(logged)
    for name in scorer.feature_names:
        want = expected[name]
        assert logged[name] == (None if isinstance(want, float) and want != want else want), name
    served = scorer.score_records([{f: logged[f] for f in scorer.feature_names}], method=None)["score"][0]
    assert row[4] == pytest.approx(float(served), rel=1e-9)
    assert all(rank_row[1][f] == stored[1][f] or stored[1][f] != stored[1][f] for f in scorer.feature_names)


def test_the_scoring_path_logs_in_as_its_own_role(url: str, keys, leads, settings) -> None:  # noqa: ANN001
    """Least privilege (infra/migrations/0014_serving_role.sql): the service's connections that a score opens,
    kept or fresh, belong to leadscore_serving (the owner's are for its privacy routes alone)."""
    assert post(url, "/score", {"lead_id": leads[1]}, keys["main"]).status_code == 200
    with psycopg.connect(settings.pg_dsn()) as conn:
        users = wait_for(lambda: {r[0] for r in conn.execute(
            "SELECT usename FROM pg_stat_activity WHERE usename = 'leadscore_serving'").fetchall()})
    assert users == {"leadscore_serving"}


def test_health_readiness_metrics_and_openapi(url: str, keys, leads, settings) -> None:  # noqa: ANN001
    assert post(url, "/score", {"lead_id": leads[0]}, keys["main"]).status_code == 200
    assert post(url, "/score", {"lead_id": "it-no-such-lead"}, keys["main"]).status_code == 404
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert httpx.get(f"{url}/readyz").status_code == 200
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {settings.secret('metrics_token')}"}).text
    for name in ("leadscore_serving_request_seconds_bucket", "leadscore_serving_score_bucket",
                 "leadscore_serving_errors_total", "leadscore_serving_batch_rows"):
        assert name in text, name
    assert 'endpoint="score"' in text and 'kind="404"' in text
    spec = httpx.get(f"{url}/docs.json").json()
    assert {"/score", "/rank", "/admin/reload"} <= set(spec["paths"])
    assert spec["components"]["schemas"]["ScoreRequestIODescriptor"]["example"]["lead_id"]


def test_a_moved_alias_is_served_without_a_restart(url: str, keys, leads, settings, champion) -> None:  # noqa: ANN001
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(settings.tracking_uri)
    run_id = client.get_model_version(MODEL, champion).run_id
    mlflow.set_tracking_uri(settings.tracking_uri)
    new = mlflow.register_model(f"runs:/{run_id}/model", MODEL).version
    assert post(url, "/admin/reload", {}, keys["main"]).status_code == 403  # only an admin key may force it
    client.set_registered_model_alias(MODEL, "champion", new)
    try:
        wait_for(lambda: post(url, "/score", {"lead_id": leads[0]}, keys["main"]).json()["model_version"] == new,
                 timeout=60, every=0.5)
        client.set_registered_model_alias(MODEL, "champion", champion)
        r = post(url, "/admin/reload", {}, keys["admin"])
        assert r.status_code == 200 and r.json() == {"model_version": champion, "changed": True}
        assert post(url, "/score", {"lead_id": leads[0]}, keys["main"]).json()["model_version"] == champion
    finally:
        client.set_registered_model_alias(MODEL, "champion", champion)


def test_no_stack_trace_ever_reaches_a_client(url: str, keys) -> None:  # noqa: ANN001
    headers = {"Authorization": f"Bearer {keys['main']}", "Content-Type": "application/json"}
    for path, raw in (("/score", b'{"lead_id": "x", "features": {"total_visits": 1e400}}'),
                      ("/score", b'{"lead_id": "x", "features": {"total_visits": NaN}}'),
                      ("/score", b'{"lead_id": "x", "messages": [""]}'),
                      ("/score", b'[1, 2]'),
                      ("/rank", b'{"leads": [{"lead_id": "x", "features": {"lead_origin": 7}}]}')):
        r = httpx.post(f"{url}{path}", content=raw, headers=headers)
        assert 400 <= r.status_code < 500 and "Traceback" not in r.text, r.text
        assert json.loads(r.text)["errors"], r.text


def test_the_fast_path_answers_as_bentomls_own_request_path(url: str, keys, leads, stack_env_vars,  # noqa: ANN001
                                                             tmp_path) -> None:  # noqa: ANN001
    """/score and /rank are answered before BentoML's routing (serving/middleware.py); with LEADSCORE_FAST_HTTP=0
    BentoML's endpoints answer. Both must give the same status and body for good and bad requests alike."""
    from tests.conftest import free_ports

    requests = [("/score", {"lead_id": leads[1]}), ("/score", {"lead_id": leads[2], "explain": "shap", "top_k": 5}),
                ("/score", {"lead_id": NEW_LEAD, "features": {"total_visits": 3, "lead_origin": "API"}}),
                ("/score", {"lead_id": "it-no-such-lead"}), ("/score", {"lead_id": "x", "colour": "red"}),
                ("/score", {"lead_id": 42}), ("/score", [1, 2]), ("/score", {"lead_id": "x", "top_k": 0}),
                ("/score", {"lead_id": "x", "features": {"total_visits": "many"}}),
                ("/rank", {"leads": [{"lead_id": x} for x in leads[:50]] + [{"lead_id": "it-no-such-lead"}]}),
                ("/rank", {"leads": []}), ("/rank", {"leads": [{"lead_id": "a b"}], "limit": 0})]
    env = {**stack_env_vars, "LEADSCORE_FAST_HTTP": "0"}
    with serving(env, free_ports(1)[0], tmp_path / "serve.log") as plain:
        for path, body in requests:
            fast, slow = post(url, path, body, keys["main"]), post(plain, path, body, keys["main"])
            assert (fast.status_code, fast.json()) == (slow.status_code, slow.json()), (path, body)
        headers = {"Authorization": f"Bearer {keys['main']}", "Content-Type": "application/json"}
        fast, slow = (httpx.post(f"{u}/score", content=b'{"lead_id": ', headers=headers) for u in (url, plain))
        assert fast.status_code == slow.status_code == 400 and fast.json()["error"] == slow.json()["error"]
        for key in (None, keys["main"] + "x"):  # the access rules are the same code on both paths
            fast, slow = post(url, "/score", {"lead_id": leads[1]}, key), post(plain, "/score", {"lead_id": leads[1]},
                                                                                 key)
            assert (fast.status_code, fast.json(), fast.headers["www-authenticate"]) == \
                (slow.status_code, slow.json(), slow.headers["www-authenticate"])


def test_infra_up_starts_the_service_once_a_champion_exists(stack_env_vars: dict[str, str], champion: str) -> None:
    from infra.servers import ServingServer
    from tests.conftest import free_ports, leadscore
    from tests.integration.serving_support import SERVER_ENV

    env = {**stack_env_vars, **SERVER_ENV, "LEADSCORE_SERVING_PORT": str(free_ports(1)[0])}
    server = ServingServer(Settings.load(env))
    try:
        up = leadscore(["infra", "up"], env, timeout=300)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "starting serving" in up.stdout and server.pid() is not None
        status = leadscore(["infra", "status"], env)
        assert status.returncode == 0
        assert any(" serving " in line and "healthy" in line for line in status.stdout.splitlines()), status.stdout
        assert httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5).status_code == 200
        console = f"http://127.0.0.1:{server.port}/console/"
        assert f"console: {console} " in status.stdout, status.stdout  # the console, a route of the service
        assert httpx.get(f"{console}sign-in", timeout=5).status_code == 200
        again = leadscore(["infra", "up"], {**env, "LEADSCORE_MODEL_NAME": "no-such-model"})
        assert "starting serving" not in again.stdout  # already running: nothing to start
    finally:
        server.stop()
    none = leadscore(["infra", "up"], {**env, "LEADSCORE_MODEL_NAME": "no-such-model"})
    assert none.returncode == 0 and "serving: not started, no no-such-model@champion yet" in none.stdout
