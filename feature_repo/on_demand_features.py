"""Features computed at request time from stored ones (python mode: the fast path for online reads)."""

from typing import Any

from feast import Field, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64
from feature_views import lead_engagement_fv

scoring_request = RequestSource(
    name="scoring_request",
    schema=[Field(name="as_of_ts", dtype=Float64, description="unix seconds the score is for: now when serving, "
                  "the label's time when training (so training and serving compute the same thing)")],
    description="Values the caller supplies with each request.",
    owner="data-science@leadscore",
    tags={"kind": "request"},
)


@on_demand_feature_view(
    sources=[lead_engagement_fv, scoring_request],
    # Feast 0.67 compares these Fields with the inferred ones including their description, so a description here
    # fails `feast apply`: each output is described in the view's description instead.
    schema=[Field(name=name, dtype=Float64) for name in (
        "email_open_rate_30d", "email_click_through_rate_30d", "engagement_velocity",
        "days_since_first_touch", "hours_since_last_event")],
    mode="python",
    description="Ratios and recencies derived from engagement at request time. email_open_rate_30d: emails "
    "opened / sent, last 30 days. email_click_through_rate_30d: clicked / opened. engagement_velocity: the share "
    "of the last 30 days' listing views that fell in the last 7 days, times 30/7 (1 = steady, above 1 = "
    "accelerating). days_since_first_touch, hours_since_last_event: from the first / latest event to as_of_ts. "
    "Missing inputs give NaN.",
    owner="data-science@leadscore",
    tags={"kind": "on-demand"},
)
def lead_engagement_ratios(inputs: dict[str, Any]) -> dict[str, Any]:
    # Self-contained on purpose: Feast stores this function's source in the registry and rebuilds it from there,
    # so helpers outside it would not exist when it runs. Missing values are NaN (Feast infers float from them).
    nan = float("nan")

    def _ratio(num: float | None, den: float | None) -> float:
        return nan if num is None or den is None or den <= 0 else float(num) / float(den)

    out: dict[str, list] = {k: [] for k in ("email_open_rate_30d", "email_click_through_rate_30d",
                                             "engagement_velocity", "days_since_first_touch",
                                             "hours_since_last_event")}
    for i, as_of in enumerate(inputs["as_of_ts"]):
        out["email_open_rate_30d"].append(_ratio(inputs["emails_opened_30d"][i], inputs["emails_sent_30d"][i]))
        out["email_click_through_rate_30d"].append(
            _ratio(inputs["emails_clicked_30d"][i], inputs["emails_opened_30d"][i]))
        share = _ratio(inputs["listing_views_7d"][i], inputs["listing_views_30d"][i])
        out["engagement_velocity"].append(share * 30.0 / 7.0)
        first, last = inputs["first_touch_ts"][i], inputs["last_event_ts"][i]
        out["days_since_first_touch"].append(nan if first is None or as_of is None else (as_of - first) / 86400)
        out["hours_since_last_event"].append(nan if last is None or as_of is None else (as_of - last) / 3600)
    return out
