"""Feature services: exactly what each model version reads. Add a new version; never edit a published one."""

from feast import FeatureService
from feature_views import lead_demographics_fv, lead_engagement_fv
from on_demand_features import lead_engagement_ratios

lead_scoring_v1 = FeatureService(
    name="lead_scoring_v1",
    features=[lead_demographics_fv, lead_engagement_fv, lead_engagement_ratios],
    description="The first broker lead-scoring model: demographics, engagement and derived ratios. Market context "
    "is keyed by city and joins in a later version.",
    owner="data-science@leadscore",
    tags={"model": "lead-scorer", "version": "1", "dataset": "broker_leads"},
)
