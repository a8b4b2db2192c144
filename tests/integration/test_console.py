"""The console in a real browser: Debian's Chromium driven by Playwright against the real `leadscore serve`.

Sign in with a token from `leadscore serve token create`, the ranked list, filters, a lead's page, sign-out; a
tenant that does not hold a lead gets 404 for it by URL; a message with markup shows as text; a form without its
CSRF token is refused; axe-core finds no serious or critical violation on any page. Screenshots go to
$LEADSCORE_SCREENSHOTS (docs/console/ holds the ones the docs show) or the test's temporary folder.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import httpx
import psycopg
import pytest

from infra.config import Settings
from tests.conftest import REPO
from tests.integration.serving_support import MODEL, ensure_champion, run_ok, serving

pytestmark = [pytest.mark.integration, pytest.mark.slow]
CHROMIUM = os.environ.get("LEADSCORE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
AXE = REPO / "tests/browser/node_modules/axe-core/axe.min.js"
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'
XSS_LEAD = "it-console-xss"
ASSIGNED_BY = "it_console"  # the dataset the test's assignments are recorded under (removed at the end)


@pytest.fixture(scope="module")
def champion(settings: Settings, stack_env_vars: dict[str, str], applied_store) -> str:  # noqa: ANN001
    return ensure_champion(settings, stack_env_vars)


@pytest.fixture(scope="module")
def assigned(settings: Settings, champion: str) -> dict[str, list[str]]:
    """300 consenting X Education leads assigned to broker BR-7 and 20 to BR-8, as a CRM export's broker column
    would assign them (tests/integration/test_ingest_runs.py shows the ingest writing these rows)."""
    with psycopg.connect(settings.pg_dsn()) as conn:
        leads = [r[0] for r in conn.execute(
            "SELECT x.lead_id FROM offline.xeducation x JOIN compliance.consent c ON c.lead_id = x.lead_id AND "
            "c.purpose = 'scoring' AND c.granted ORDER BY x.lead_id LIMIT 320")]
        mine = {"BR-7": leads[:300], "BR-8": leads[300:]}
        for broker, ids in mine.items():
            conn.execute("INSERT INTO offline.lead_brokers (lead_id, broker, dataset) SELECT l, %s, %s FROM "
                         "unnest(%s::text[]) l ON CONFLICT (lead_id) DO UPDATE SET broker = EXCLUDED.broker",
                         (broker, ASSIGNED_BY, ids))
    yield mine
    with psycopg.connect(settings.pg_dsn()) as conn:
        conn.execute("DELETE FROM offline.lead_brokers WHERE dataset = %s", (ASSIGNED_BY,))


@pytest.fixture(scope="module")
def url(stack_env_vars: dict[str, str], settings: Settings, champion: str, assigned, tmp_path_factory) -> str:  # noqa: ANN001
    log = tmp_path_factory.mktemp("console") / "serve.log"
    with serving(stack_env_vars, settings.serving_port, log) as base:
        yield base


def token(env: dict[str, str], tenant: str, role: str = "broker", broker: str | None = "BR-7") -> str:
    extra = ["--broker", broker] if broker else []
    return run_ok(["serve", "token", "--subject", f"it-{role}@{tenant}", "--tenant", tenant, "--role", role,
                   *extra], env).strip().splitlines()[-1]


@pytest.fixture(scope="module")
def browser():  # noqa: ANN201 - playwright Browser
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: `bash infra/bootstrap.sh test` installs Debian's chromium")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("LEADSCORE_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sign_in(page, url: str, secret: str) -> None:  # noqa: ANN001 - playwright Page
    page.goto(f"{url}/console/")
    assert page.url.endswith("/console/sign-in")
    page.get_by_label("Access token or API key").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def axe_violations(page) -> list[dict]:  # noqa: ANN001
    """axe-core's serious and critical violations on the page as shown."""
    assert AXE.exists(), f"{AXE} is missing: `bash infra/bootstrap.sh test` installs it (npm ci in tests/browser)"
    if not page.evaluate("typeof axe !== 'undefined'"):  # through DevTools: the page's CSP stays in force for it
        page.evaluate(f"() => {{ {AXE.read_text()}\n; window.axe = axe; }}")
    found = page.evaluate("async () => (await axe.run(document)).violations.map(v => ({id: v.id, impact: v.impact, "
                          "nodes: v.nodes.length, help: v.help}))")
    return [v for v in found if v["impact"] in ("serious", "critical")]


def test_a_broker_signs_in_sees_the_ranked_list_filters_opens_a_lead_and_signs_out(
        url: str, stack_env_vars: dict[str, str], browser, shots: Path) -> None:  # noqa: ANN001
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    sign_in(page, url, token(stack_env_vars, "default"))
    assert page.url.endswith("/console/leads"), page.content()[:2000]
    rows = page.locator("table.leads tbody tr")
    assert rows.count() == 300, page.locator("main").inner_text()[:2000]  # BR-7's leads: all consent to scoring
    ranks = [int(t) for t in page.locator("table.leads tbody tr td:nth-child(1)").all_inner_texts()]
    scores = [float(t) for t in page.locator("table.leads tbody tr td:nth-child(4)").all_inner_texts()]
    assert ranks == list(range(1, len(ranks) + 1))
    assert all(a >= b for a, b in zip(scores, scores[1:], strict=False)), "the list is not best first"
    assert all(t.startswith("Tier ") for t in page.locator("table.leads tbody tr td:nth-child(5)").all_inner_texts())
    assert page.locator("table.leads tbody tr td:nth-child(6) time").count() == rows.count()
    page.screenshot(path=str(shots / "leads.png"))
    assert axe_violations(page) == []

    cookie = next(c for c in context.cookies() if c["name"] == "ls_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    total = rows.count()
    tiers = page.locator("#f-tier option").all_inner_texts()[1:]
    assert tiers, "no tier to filter by"
    page.select_option("#f-tier", tiers[-1])
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state()
    shown = page.locator("table.leads tbody tr td:nth-child(3)").all_inner_texts()
    assert shown and set(shown) == {tiers[-1]} and len(shown) < total, (tiers, shown[:5], total)
    cities = page.locator("#f-city option").all_inner_texts()[1:]
    assert cities, "the model's city feature gives no filter"
    page.goto(f"{url}/console/leads?city={cities[0]}")
    city_col = page.locator("table.leads thead th").all_inner_texts().index("City") + 1
    assert set(page.locator(f"table.leads tbody tr td:nth-child({city_col})").all_inner_texts()) == {cities[0]}

    page.goto(f"{url}/console/leads")
    first = page.locator("table.leads tbody tr td:nth-child(2) a").first
    lead_id = first.inner_text()
    first.click()
    page.wait_for_load_state()
    assert page.url.endswith(f"/console/leads/{lead_id}")
    assert page.locator("h1").inner_text() == f"Lead {lead_id}"
    assert page.locator("#explanation").inner_text().startswith("Tier ")
    assert page.locator("figure.chart svg rect").count() >= 2, "no contribution bars"
    consent = page.locator("#consent-h + table tbody tr td:nth-child(2)").all_inner_texts()
    assert len(consent) == 3 and consent[0] in ("granted", "withdrawn", "not asked")
    assert page.locator("#history-h ~ table tbody tr").count() >= 1, "the lead's score history is empty"
    assert "xeducation recorded" in page.locator("ul.activity").inner_text()  # its CRM row, when it was recorded
    page.screenshot(path=str(shots / "lead.png"), full_page=True)
    assert axe_violations(page) == []

    shows_progress = page.evaluate("""() => { const f = document.querySelector('header form');
        f.addEventListener('submit', e => e.preventDefault(), {once: true}); f.requestSubmit();
        const box = document.getElementById('progress');
        return !box.hidden && f.querySelector('button').disabled; }""")
    assert shows_progress, "a form sent shows no progress"
    page.reload()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()
    assert page.url.endswith("/console/sign-in")
    assert axe_violations(page) == []
    old = httpx.get(f"{url}/console/leads", cookies={"ls_session": cookie["value"]}, follow_redirects=False)
    assert old.status_code == 303 and old.headers["location"].endswith("/sign-in"), "a signed-out session still opens"
    context.close()


def test_another_tenants_lead_is_not_found_by_url(url: str, stack_env_vars: dict[str, str], browser,  # noqa: ANN001
                                                  assigned) -> None:
    theirs = assigned["BR-7"][0]
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, url, token(stack_env_vars, "it-tenant-b"))
    assert page.url.endswith("/console/leads")
    assert page.locator("table.leads tbody tr").all_inner_texts() == ["No lead matches."]
    response = page.goto(f"{url}/console/leads/{theirs}")
    assert response.status == 404 and theirs not in page.content(), page.content()[:1000]
    context.close()
    other = browser.new_context()  # the default tenant's broker reaches it
    own = other.new_page()
    sign_in(own, url, token(stack_env_vars, "default"))
    assert own.goto(f"{url}/console/leads/{theirs}").status == 200
    other.close()


def test_a_message_with_markup_is_shown_as_text(url: str, stack_env_vars: dict[str, str], browser,  # noqa: ANN001
                                                settings: Settings, shots: Path, assigned) -> None:
    lead = assigned["BR-7"][5]
    with psycopg.connect(settings.pg_dsn()) as conn:
        for purpose in ("scoring", "text_analysis"):
            conn.execute("INSERT INTO compliance.consent (lead_id, purpose, granted, source) VALUES (%s, %s, true, "
                         "'test') ON CONFLICT (lead_id, purpose) DO UPDATE SET granted = true", (lead, purpose))
        conn.execute("INSERT INTO text_store.messages (event_id, lead_id, kind, direction, sent_at, text) VALUES "
                     "(%s, %s, 'whatsapp', 'inbound', now(), %s) ON CONFLICT (event_id) DO NOTHING",
                     (XSS_LEAD, lead, XSS))
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sign_in(page, url, token(stack_env_vars, "default"))
    response = page.goto(f"{url}/console/leads/{lead}")
    assert response.status == 200
    assert XSS in page.locator(".message").all_inner_texts(), page.locator("#messages-h ~ ul").inner_html()[:500]
    assert page.evaluate("window.__xss") is None and page.locator("main img").count() == 0
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page.screenshot(path=str(shots / "lead-message.png"), full_page=True)
    assert errors == []
    context.close()


def test_a_broker_sees_only_their_leads_and_a_manager_every_lead_of_the_tenant(
        url: str, stack_env_vars: dict[str, str], browser, assigned) -> None:  # noqa: ANN001
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, url, token(stack_env_vars, "default", broker="BR-8"))
    shown = page.locator("table.leads tbody tr td:nth-child(2)").all_inner_texts()
    assert sorted(shown) == sorted(assigned["BR-8"])
    assert page.goto(f"{url}/console/leads/{assigned['BR-8'][0]}").status == 200
    assert page.goto(f"{url}/console/leads/{assigned['BR-7'][0]}").status == 404, "another broker's lead opened"
    context.close()
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, url, token(stack_env_vars, "default", "manager", None))
    headers = page.locator("table.leads thead th").all_inner_texts()
    assert "Broker" in headers
    brokers = page.locator(f"table.leads tbody tr td:nth-child({headers.index('Broker') + 1})").all_inner_texts()
    assert len(brokers) == 1000 and {"BR-7", "BR-8", ""} >= set(brokers), set(brokers)
    assert page.goto(f"{url}/console/leads/{assigned['BR-7'][0]}").status == 200
    context.close()
    context = browser.new_context()  # a broker's token that names no broker sees no lead
    page = context.new_page()
    sign_in(page, url, token(stack_env_vars, "default", broker=None))
    assert page.locator("table.leads tbody tr").all_inner_texts() == ["No lead matches."]
    context.close()


def test_a_form_without_its_csrf_token_is_refused(url: str, stack_env_vars: dict[str, str], browser) -> None:  # noqa: ANN001
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{url}/console/sign-in")
    page.evaluate("document.querySelector('input[name=csrf_token]').remove()")
    page.get_by_label("Access token or API key").fill(token(stack_env_vars, "default"))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert re.search("did not come from the sign-in page", page.locator("main").inner_text())
    assert not any(c["name"] == "ls_session" for c in context.cookies()), "signed in without the form token"
    sign_in(page, url, token(stack_env_vars, "default"))
    page.evaluate("document.querySelector('header input[name=csrf_token]').value = 'forged'")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()
    assert "did not carry its form token" in page.locator("main").inner_text()
    assert page.goto(f"{url}/console/leads").status == 200, "the refused sign-out ended the session"
    context.close()


def test_a_wrong_token_and_a_role_without_a_page_get_a_readable_line(url: str, stack_env_vars: dict[str, str],  # noqa: ANN001
                                                                      browser, shots: Path) -> None:
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, url, "not-a-token")
    assert "is not valid" in page.locator("[role=alert]").inner_text()
    page.screenshot(path=str(shots / "sign-in-refused.png"))
    assert axe_violations(page) == []
    sign_in(page, url, token(stack_env_vars, "default", "privacy_officer", None))
    assert page.url.endswith("/console/privacy")
    assert page.goto(f"{url}/console/leads").status == 403
    assert "Lead pages are for brokers" in page.locator("[role=alert]").inner_text()
    assert "Traceback" not in page.content()
    context.close()


def test_a_data_scientist_sees_champion_and_challenger_drift_quality_and_alerts(
        url: str, stack_env_vars: dict[str, str], browser, shots: Path) -> None:  # noqa: ANN001
    """The monitor's own commands compute drift and realized quality over what the tests above were served; the
    models page shows them beside the two versions' metrics and plots from MLflow and Prometheus's alerts."""
    env = {**stack_env_vars, "LEADSCORE_MODEL_NAME": MODEL}
    run_ok(["monitor", "drift", "--model", MODEL, "--window", "1d"], env)
    run_ok(["monitor", "performance", "--model", MODEL], env)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    sign_in(page, url, token(stack_env_vars, "default", "data_scientist", None))
    page.get_by_role("link", name="Models").click()
    page.wait_for_load_state()
    assert page.url.endswith("/console/models")
    main = page.locator("main").inner_text()
    assert "@champion · version" in main and "did not answer" not in main, main[:3000]
    auc = page.locator("table.versions tbody tr", has_text="ROC AUC (held out)").locator("td").first.inner_text()
    assert 0.5 < float(auc) <= 1.0, auc
    plots = page.locator(".plots img")
    assert plots.count() >= 2 and all(src.startswith("data:image/png;base64,")
                                      for src in [plots.nth(i).get_attribute("src") for i in range(plots.count())])
    assert page.locator("#drift-h ~ table tbody tr").count() >= 10, main[:3000]  # a row per served feature
    assert "% of features drifted" in main
    assert page.locator("#quality-h ~ table tbody tr").count() >= 1, main[:3000]
    assert "No alert is pending or firing." in main or page.locator("#alerts-h ~ table tbody tr").count() >= 1
    page.screenshot(path=str(shots / "models.png"), full_page=True)
    assert axe_violations(page) == []
    context.close()
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, url, token(stack_env_vars, "default"))
    assert page.goto(f"{url}/console/models").status == 403 and page.locator("a", has_text="Models").count() == 0
    context.close()


def test_a_privacy_officer_sees_requests_exports_erases_with_a_receipt_and_verifies_the_ledger(
        url: str, stack_env_vars: dict[str, str], browser, settings: Settings, tmp_path: Path,  # noqa: ANN001
        shots: Path) -> None:
    """In a tenant of its own (ingested here by the real command), so the erasure touches no other test's lead."""
    from compliance.requests import open_request
    from tests.integration.test_dataset_drop import _spec
    from tests.integration.test_ingest_runs import _file

    tenant, lead = "it-console-dpo", "Lead 3"
    spec = _spec(tmp_path / "specs", "it_console_dpo", entity="{column: Nom}")
    done = run_ok(["ingest", "crm", str(_file(tmp_path / "leads.csv", 6)), "--spec", str(spec), "--tenant", tenant],
                  stack_env_vars)
    assert "loaded 6" in done, done
    request = open_request(settings, "grievance", f"{tenant}/{lead}", "email")
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    sign_in(page, url, token(stack_env_vars, tenant, "privacy_officer", None))
    assert page.url.endswith("/console/privacy")
    row = page.locator("table.requests tbody tr", has_text=request)
    assert row.count() == 1 and lead in row.inner_text() and "d left" in row.inner_text(), page.content()[:2000]
    assert axe_violations(page) == []

    page.fill("#export-lead", lead)
    page.get_by_role("button", name="Export").click()
    page.wait_for_load_state()
    assert page.locator("pre.export").count() == 1, page.locator("main").inner_text()[:1500]
    exported = page.locator("pre.export").inner_text()
    assert f'"{lead}"' in exported and f"{tenant}/" not in exported, exported[:1500]  # the tenant's own id only

    page.fill("#erase-lead", lead)
    page.get_by_role("button", name="Erase").click()  # not confirmed: refused, nothing erased
    page.wait_for_load_state()
    assert "tick the box" in page.locator("[role=alert]").inner_text()
    page.goto(f"{url}/console/privacy")
    page.fill("#erase-lead", lead)
    page.check("#erase-confirm")
    page.get_by_role("button", name="Erase").click()
    page.wait_for_load_state()
    receipt = page.locator("#receipt").inner_text()
    assert "complete" in receipt and "incomplete" not in receipt, receipt
    with psycopg.connect(settings.pg_dsn()) as conn:
        left = conn.execute("SELECT count(*) FROM offline.it_console_dpo WHERE lead_id = %s",
                            (f"{tenant}/{lead}",)).fetchone()[0]
        others = conn.execute("SELECT count(*) FROM offline.it_console_dpo").fetchone()[0]
    assert (left, others) == (0, 5)
    assert page.locator("table.requests tbody tr", has_text=request).count() == 0, "the answered request stays open"
    page.screenshot(path=str(shots / "privacy.png"), full_page=True)

    page.get_by_role("button", name="Verify the ledger").click()
    page.wait_for_load_state()
    assert page.locator("#ledger-result").inner_text().startswith("Intact")
    context.close()
    from pipelines.dataset import drop_dataset

    drop_dataset(settings, "it_console_dpo", folder=spec.parent)
