"""The README's first command's job (`leadscore demo`) from nothing, in a stack of its own; then the file-mode
sweep over its whole state directory: every folder 0700, every data, log and secret file 0600."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from infra.files import loose_files
from tests.conftest import leadscore, private_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_main_job_runs_and_leaves_no_file_readable_beyond_its_owner(tmp_path) -> None:  # noqa: ANN001
    state = tmp_path / "state"
    with private_stack(state, LEADSCORE_MODEL_NAME="lead-scorer-main-job") as env:
        done = leadscore(["demo"], env, timeout=1500)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
        assert "[10/10]" in done.stdout and "done in" in done.stdout
        _sign_in_to_the_console_it_names(done.stdout, state)
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
