"""Request and response models of the scoring API (pydantic), with realistic examples for the OpenAPI page.

Unknown fields are refused everywhere (`extra="forbid"`), so a typo in a CRM integration is a 422 naming the
field, never a silently ignored value; and types are strict (`strict=True`): `"3"` is not an integer and `1` or
`"yes"` is not a boolean. A lead sent twice in one /rank call is ranked once (copies that differ: a 409 naming
both).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

LeadId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@-]+$")]
FeatureValue = float | int | bool | str | None
MAX_RANK_LEADS = 10_000
MAX_TEXT_CHARS = 4_000
EXAMPLE_LEAD = "7927b2df-8bba-4d29-b9a2-b6e0beafe620"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LeadInput(_Strict):
    """One lead: its id, optional inline feature values (override or complete the stored ones), recent messages."""

    lead_id: LeadId = Field(description="the CRM's lead id (the feature store's entity key)")
    features: dict[Annotated[str, StringConstraints(max_length=64)], FeatureValue] | None = Field(
        None, max_length=200, description="feature values that override or complete the online ones (by name)")
    messages: list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS)]] | None = Field(
        None, max_length=20,
        description="the lead's own recent messages (WhatsApp, SMS, email replies, what the lead said on a call) for "
                    "the re-ranker")


class ScoreRequest(LeadInput):
    """POST /score: one lead, scored with its explanation."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"example": {
        "lead_id": EXAMPLE_LEAD, "features": {"time_on_website_s": 1480, "lead_source": "Google"},
        "messages": ["Can we do the site visit on Sunday? Please send the EMI details."]}})
    top_k: int = Field(3, ge=1, le=20, description="contributing features returned per side")
    explain: Literal["path", "shap"] = Field(
        "path", description="how the score is split by feature: 'path' (tree-path attributions, fast) or 'shap' "
                            "(tree SHAP, about 25x the model time); both add up to the stacked log-odds")


class RankRequest(_Strict):
    """POST /rank: up to 10,000 leads scored in one call and returned best first."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra={"example": {
        "leads": [{"lead_id": EXAMPLE_LEAD}, {"lead_id": "new-lead-1", "features": {"lead_origin": "Landing Page "
                                                                                     "Submission",
                                                                                     "total_visits": 4}}],
        "rerank": True}})
    leads: list[LeadInput] = Field(min_length=1, max_length=MAX_RANK_LEADS,
                                   description="the leads to rank: a lead sent more than once is ranked once (its "
                                               "copies must be the same, else 409)")
    rerank: bool = Field(True, description="blend in the text-intent signal when a fitted re-ranker exists")
    limit: int | None = Field(None, ge=1, le=MAX_RANK_LEADS, description="return only the best N")


class Contribution(BaseModel):
    feature: str
    value: FeatureValue = Field(description="this lead's value of the feature")
    contribution: float = Field(description="signed share of the score's log-odds")


class Member(BaseModel):
    name: str
    probability: float
    weight: float = Field(description="the member's weight in the stacked log-odds")


class ScoreResponse(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {
        "lead_id": EXAMPLE_LEAD, "score": 0.87, "tier": "B", "confidence": 0.93,
        "explanation": "Tier B (score 0.87): raised most by time_on_website_s = 1480, lowered most by "
                       "lead_origin = API.",
        "top_positive": [{"feature": "time_on_website_s", "value": 1480, "contribution": 1.21}],
        "top_negative": [{"feature": "lead_origin", "value": "API", "contribution": -0.42}],
        "base_value": -0.61, "unattributed": 0.05,
        "members": [{"name": "xgboost", "probability": 0.88, "weight": 0.7}],
        "text_signal": None, "model_version": "3", "feature_service": "xeducation_v1", "missing_features": 0,
        "explained_by": "path"}})
    lead_id: str
    score: float = Field(description="calibrated probability of conversion")
    tier: str = Field(description="A (best) to D, cut-offs from the training data's score distribution")
    confidence: float = Field(description="0-1: the members' agreement times the share of features present")
    explanation: str = Field(description="one sentence")
    top_positive: list[Contribution]
    top_negative: list[Contribution]
    base_value: float = Field(description="log-odds before any feature; base + contributions + unattributed = "
                                          "the stacked log-odds")
    unattributed: float = Field(description="log-odds share of the MLP member, not split by feature")
    members: list[Member]
    text_signal: float | None = Field(None, description="text-intent signal from similar past leads' messages")
    model_version: str
    feature_service: str
    missing_features: int = Field(description="features neither stored nor given inline")
    explained_by: str = Field("path", description="the attribution method used: 'path' or 'shap'")


class RankedLead(BaseModel):
    lead_id: str
    rank: int
    score: float = Field(description="the ranking score: the blend when re-ranked, else the ensemble score")
    ensemble_score: float
    text_signal: float | None
    tier: str


class Skipped(BaseModel):
    lead_id: str
    reason: str


class RankResponse(BaseModel):
    model_version: str
    feature_service: str
    reranked: bool = Field(description="true when the fitted blender re-ordered the leads")
    reranker_version: str | None
    results: list[RankedLead]
    not_found: list[Skipped] = Field(description="unknown leads sent without inline features")
    refused: list[Skipped] = Field(description="leads without scoring consent: never scored, audited")


class ReloadResponse(BaseModel):
    model_version: str | None = Field(description="the version served now (null while none could be loaded)")
    changed: bool
