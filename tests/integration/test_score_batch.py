"""`leadscore score-batch` (issue #18): every consenting lead scored in bulk into serving.batch_scores, in one
process and on Ray Data (a local cluster of this test's own), with the online service's scores."""

from __future__ import annotations

import psycopg
import pytest

from infra.config import Settings
from tests.conftest import free_ports, leadscore
from tests.integration.serving_support import MODEL, create_key, ensure_champion, post, run_ok, serving

pytestmark = [pytest.mark.integration]


def _run(out: str) -> str:
    return next(w for w in out.split() if w.startswith("bs_")).rstrip(":")


def _scores(settings: Settings, run_id: str) -> dict[str, tuple[float, str, str]]:
    with psycopg.connect(settings.pg_dsn()) as conn:
        return {lead: (score, tier, version) for lead, score, tier, version in conn.execute(
            "SELECT lead_id, score, tier, model_version FROM serving.batch_scores WHERE run_id = %s", (run_id,))}


@pytest.fixture(scope="module")
def champion(settings: Settings, stack_env_vars: dict[str, str], applied_store) -> str:  # noqa: ANN001
    return ensure_champion(settings, stack_env_vars)


@pytest.fixture(scope="module")
def one_process(settings: Settings, stack_env_vars: dict[str, str], champion: str) -> dict:
    out = run_ok(["score-batch", "--model-name", MODEL, "--no-progress"], stack_env_vars)
    return {"out": out, "scores": _scores(settings, _run(out))}


def test_every_consenting_lead_held_online_is_scored_once_by_the_champion(
        settings: Settings, one_process: dict, champion: str) -> None:
    from compliance.children import unprotected_minor

    scores = one_process["scores"]
    with psycopg.connect(settings.pg_dsn()) as conn:
        consenting = {r[0] for r in conn.execute(
            "SELECT lead_id FROM compliance.consent c WHERE purpose = 'scoring' AND granted AND (expires_at IS NULL "
            "OR expires_at > now()) AND NOT " + unprotected_minor("c.lead_id"))}
        withdrawn = conn.execute("SELECT lead_id FROM compliance.consent WHERE purpose = 'scoring' AND NOT granted "
                                 "LIMIT 1").fetchone()
    assert len(scores) > 1000
    assert set(scores) <= consenting
    assert withdrawn is None or withdrawn[0] not in scores
    assert {v for _, _, v in scores.values()} == {champion}
    assert all(0.0 <= s <= 1.0 and t in "ABCD" for s, t, _ in scores.values())
    assert f"{len(scores):,} of" in one_process["out"]


def test_the_batch_scores_are_the_online_services(settings: Settings, stack_env_vars: dict[str, str],
                                                  one_process: dict, tmp_path) -> None:  # noqa: ANN001
    scores = one_process["scores"]
    leads = sorted(lead for lead in scores if "/" not in lead)[:40]  # the default tenant's, as its key names them
    key = create_key(stack_env_vars, "it-batch")
    with serving(stack_env_vars, free_ports(1)[0], tmp_path / "serve.log") as url:
        for lead in leads:
            r = post(url, "/score", {"lead_id": lead}, key)
            assert r.status_code == 200, r.text
            assert abs(r.json()["score"] - scores[lead][0]) <= 1e-6, lead
            assert r.json()["tier"] == scores[lead][1]


def test_ray_data_on_a_local_cluster_gives_the_same_scores(settings: Settings, stack_env_vars: dict[str, str],
                                                           one_process: dict) -> None:
    out = run_ok(["score-batch", "--model-name", MODEL, "--ray", "--workers", "2", "--batch-rows", "2000"],
                 stack_env_vars)
    assert "ray (local, 2 workers)" in out, out
    on_ray, local = _scores(settings, _run(out)), one_process["scores"]
    # the session stack's online store may gain leads between the two runs (other modules' datasets): the same
    # leads must be there, each with the same score
    both = set(on_ray) & set(local)
    assert len(both) >= 0.99 * len(local), (len(both), len(local))
    assert max(abs(on_ray[k][0] - local[k][0]) for k in both) <= 1e-6
    assert all(on_ray[k][1] == local[k][1] for k in both)


def test_an_unreachable_ray_address_is_one_line_and_writes_nothing(settings: Settings,
                                                                    stack_env_vars: dict[str, str]) -> None:
    with psycopg.connect(settings.pg_dsn()) as conn:
        before = conn.execute("SELECT count(*) FROM serving.batch_scores").fetchone()[0]
    done = leadscore(["score-batch", "--model-name", MODEL, "--ray-address", "127.0.0.1:9"], stack_env_vars,
                     timeout=300)
    text = done.stdout + done.stderr
    assert done.returncode != 0 and "127.0.0.1:9" in text and "Traceback" not in text, text[-2000:]
    with psycopg.connect(settings.pg_dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM serving.batch_scores").fetchone()[0] == before
