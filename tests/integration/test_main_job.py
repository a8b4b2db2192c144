"""The README's first command's job (`leadscore demo`) from nothing, in a stack of its own; then the file-mode
sweep over its whole state directory: every folder 0700, every data, log and secret file 0600."""

from __future__ import annotations

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
        assert loose_files(state) == []
        swept = leadscore(["infra", "files"], env)
        assert swept.returncode == 0 and "owner's alone" in swept.stdout, swept.stdout + swept.stderr
        assert {p.name for p in (state / "secrets").iterdir()} >= {"pg.password", "mlflow_admin.password",
                                                                   "metrics_token.password"}
