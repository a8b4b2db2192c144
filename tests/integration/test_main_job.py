"""The README's first command's job (`leadscore demo`) from nothing, in a stack of its own; then, on the servers it
left running, who runs them (as root: an unprivileged user, the scoring service included) and an erasure through
the service's API that reaches the registry's row artifacts; last the file-mode sweep over its whole state
directory: every folder 0700, every data, log and secret file 0600."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from infra.config import Settings
from infra.files import loose_files
from infra.stack import optional_servers, servers
from tests.conftest import leadscore, private_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_main_job_runs_and_leaves_no_file_readable_beyond_its_owner(tmp_path) -> None:  # noqa: ANN001
    state = tmp_path / "state"
    with private_stack(state, LEADSCORE_MODEL_NAME="lead-scorer-main-job") as env:
        done = leadscore(["demo"], env, timeout=1500)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        assert "[10/10]" in done.stdout and "done in" in done.stdout
        _sign_in_to_the_console_it_names(done.stdout, state)
        settings = Settings.load(env)
        if os.geteuid() == 0:
            _every_server_runs_unprivileged(settings)
        _erase_through_the_service(settings, env)
        assert loose_files(state) == []
        swept = leadscore(["infra", "files"], env)
        assert swept.returncode == 0 and "owner's alone" in swept.stdout, swept.stdout + swept.stderr
        assert {p.name for p in (state / "secrets").iterdir()} >= {"pg.password", "mlflow_admin.password",
                                                                   "metrics_token.password"}


def _sign_in_to_the_console_it_names(stdout: str, state: Path) -> None:
    """The console line of the job's last lines: its address answers, and the key it names signs in (a real form
    post with the page's form token), landing on the ranked leads."""
    found = re.search(r"console: (http://\S+/console/) \(sign in with the key in (\S+),", stdout)
    assert found, stdout[-2000:]
    url, key_file = found.group(1), Path(found.group(2))
    assert key_file.is_relative_to(state) and key_file.exists()
    with httpx.Client(timeout=60) as client:
        form = client.get(f"{url}sign-in")
        assert form.status_code == 200 and "default-src 'none'" in form.headers["content-security-policy"]
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
        done = client.post(f"{url}sign-in", data={"csrf_token": csrf, "access_token": key_file.read_text().strip()})
        assert done.status_code == 303 and done.headers["location"] == "/console/leads", done.text[:500]
        leads = client.get(f"{url}leads")
        assert leads.status_code == 200 and "Leads, best first" in leads.text, leads.text[:1000]


def _every_server_runs_unprivileged(settings: Settings) -> None:
    """As root, every server the job left running is the service user's (Prometheus: Debian's `prometheus`), the
    scoring service and its workers included: no server holds root's rights or reads the root-only secrets."""
    users = {}
    for server in [*servers(settings), *optional_servers(settings)]:
        pid = server.pid()
        assert pid is not None, server.name
        proc = psutil.Process(pid)
        users[server.name] = {p.username() for p in (proc, *proc.children(recursive=True))}
    assert "serving" in users, users
    for name, owners in users.items():
        assert owners == {"prometheus" if name == "prometheus" else settings.service_user}, users


def _erase_through_the_service(settings: Settings, env: dict[str, str]) -> None:
    """Erasure over HTTP by the running service (its own logins only): every store answers, the registry's held-out
    rows included (30 leads: some are in the trained version's test split), and the receipt is complete."""
    made = leadscore(["serve", "keys", "create", "--tenant", "default", "--scope", "privacy"], env)
    assert made.returncode == 0, made.stderr
    key = made.stdout.split()[0]
    with psycopg.connect(settings.pg_dsn()) as conn:
        ids = [r[0] for r in conn.execute("SELECT lead_id FROM offline.labels WHERE dataset = 'xeducation' "
                                          "ORDER BY md5(lead_id) LIMIT 30")]
    answer = httpx.post(f"http://{settings.host}:{settings.serving_port}/privacy/erasure", json={"lead_ids": ids},
                        headers={"Authorization": f"Bearer {key}"}, timeout=300)
    assert answer.status_code == 200, answer.text[:1000]
    receipt = answer.json()["receipt"]
    stores = {s["store"]: s for s in receipt["stores"]}
    assert receipt["complete"] and stores["mlflow:artifacts"]["before"] >= 1, stores
