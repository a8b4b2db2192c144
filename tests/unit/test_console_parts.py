"""The console's parts that need no server: charts escape what they draw, times read as a person says them, keys
map to roles, form tokens compare safely."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from serving.console.charts import contributions, history
from serving.console.sessions import role_of_key, same
from serving.console.views import ago
from serving.keys import ApiKey


def test_chart_text_from_data_is_escaped_and_bars_are_signed() -> None:
    svg = str(contributions([{"feature": "city", "value": "<script>alert(1)</script>", "contribution": 0.4},
                             {"feature": "visits", "value": 3, "contribution": -0.2}]))
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.count("<rect") == 2 and 'fill="#1d6b3a"' in svg and 'fill="#a3262a"' in svg
    assert "style=" not in svg  # the page's CSP allows no inline style
    assert str(contributions([])) == ""


def test_history_draws_a_dot_per_score_within_the_frame() -> None:
    now = datetime.now(UTC)
    svg = str(history([{"at": now, "score": s, "tier": "<b>"} for s in (0.1, 0.5, 1.2)], height=120))
    assert svg.count("<circle") == 3 and "&lt;b&gt;" in svg
    ys = [float(part.split('"')[0]) for part in svg.split('cy="')[1:]]
    assert all(28 <= y <= 92 for y in ys)  # a score over 1 is drawn at 1, not outside the frame


@pytest.mark.parametrize(("seconds", "said"), [(5, "just now"), (120, "2 min ago"), (7200, "2 h ago"),
                                               (3 * 86400 + 5, "3 d ago")])
def test_ago(seconds: int, said: str) -> None:
    now = datetime.now(UTC)
    assert ago(now - timedelta(seconds=seconds), now) == said
    assert ago(None) == "never"


def test_keys_sign_in_as_the_role_they_act_as() -> None:
    def key(broker: str | None, scopes: tuple[str, ...]) -> ApiKey:
        return ApiKey("k", "acme", broker, 10, 20, scopes)

    assert role_of_key(key("BR-1", ("score",))) == "broker"
    assert role_of_key(key(None, ("score",))) == "manager"
    assert role_of_key(key(None, ("consent", "privacy"))) == "privacy_officer"


def test_form_tokens_compare_only_when_both_are_present() -> None:
    assert same("abc", "abc") and not same("abc", "abd")
    assert not same(None, None) and not same("", "") and not same("abc", None)


@pytest.mark.parametrize(("value", "ok"), [("L-1", True), ("Lead 3", True), ("x" * 200, True), ("", False),
                                           (" L-1", False), ("a/b", False), ("L\n1", False), ("x" * 201, False)])
def test_a_lead_id_is_what_a_store_may_hold_without_the_tenant_separator(value: str, ok: bool) -> None:
    from serving.console.app import is_lead_id

    assert is_lead_id(value) is ok
