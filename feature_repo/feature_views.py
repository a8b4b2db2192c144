"""Feature views over the offline tables; the same names are the columns of infra/migrations/0002_feature_store.sql."""

from datetime import timedelta

from data_sources import lead_demographics_source, lead_engagement_push_source, market_context_source
from entities import city, lead
from feast import FeatureView, Field
from feast.types import Float64, Int64, String

OWNER = "data-science@leadscore"

lead_demographics_fv = FeatureView(
    name="lead_demographics",
    entities=[lead],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="age_band", dtype=String, description="18-24, 25-34, 35-44, 45-54 or 55+"),
        Field(name="annual_income_inr", dtype=Float64, description="declared annual income, INR"),
        Field(name="employment_type", dtype=String, description="salaried, self_employed, business, retired, ..."),
        Field(name="cibil_score", dtype=Int64, description="CIBIL credit score, 300-900"),
        Field(name="cibil_band", dtype=String, description="poor (<550), fair, good, very_good, excellent (750+)"),
        Field(name="city", dtype=String, description="city of residence"),
        Field(name="city_tier", dtype=Int64, description="1 (metro), 2 or 3"),
        Field(name="household_size", dtype=Int64, description="people in the household"),
        Field(name="profession", dtype=String, description="self-reported profession"),
    ],
    source=lead_demographics_source,
    online=True,
    description="Who the lead is: demographic and financial profile from the CRM. No names, phones or emails.",
    owner=OWNER,
    tags={"kind": "demographics", "pii": "false"},
)

# (feature family, what is counted); each is kept over 1 d, 7 d and 30 d windows by the stream workers
ENGAGEMENT_FAMILIES = [
    ("listing_views", "listing or property page views"),
    ("searches", "property searches"),
    ("saved_listings", "listings saved or shortlisted"),
    ("emi_calculator_uses", "mortgage / EMI calculator uses"),
    ("sessions", "site or app sessions"),
    ("time_on_site_s", "seconds on site or app"),
    ("emails_sent", "emails sent to the lead"),
    ("emails_opened", "emails opened"),
    ("emails_clicked", "email links clicked"),
    ("whatsapp_in", "WhatsApp/SMS messages from the lead"),
    ("whatsapp_out", "WhatsApp/SMS messages to the lead"),
    ("calls", "phone calls, either direction"),
    ("form_submissions", "enquiry or form submissions"),
]
WINDOWS = {"1d": "last day", "7d": "last 7 days", "30d": "last 30 days"}

lead_engagement_fv = FeatureView(
    name="lead_engagement",
    entities=[lead],
    ttl=timedelta(days=30),
    schema=[
        Field(name=f"{family}_{window}", dtype=Float64 if family == "time_on_site_s" else Int64,
              description=f"{what}, {span}")
        for family, what in ENGAGEMENT_FAMILIES
        for window, span in WINDOWS.items()
    ]
    + [
        Field(name="whatsapp_reply_latency_s_30d", dtype=Float64,
              description="mean seconds from our message to the lead's reply, last 30 days"),
        Field(name="first_touch_ts", dtype=Float64, description="unix seconds of the lead's first event"),
        Field(name="last_event_ts", dtype=Float64, description="unix seconds of the lead's latest event"),
    ],
    source=lead_engagement_push_source,
    online=True,
    description="What the lead does: windowed activity counts, fed by the Faust stream workers within a second.",
    owner=OWNER,
    tags={"kind": "engagement", "freshness": "streaming"},
)

market_context_fv = FeatureView(
    name="market_context",
    entities=[city],
    ttl=timedelta(days=730),  # policy rates can hold for two years (Feb 2023 - Feb 2025)
    schema=[
        Field(name="repo_rate_pct", dtype=Float64, description="RBI policy repo rate in force, percent"),
        Field(name="home_loan_rate_pct", dtype=Float64, description="typical home-loan rate, percent"),
        Field(name="hpi_change_yoy_pct", dtype=Float64, description="house price index change over a year, percent"),
        Field(name="inventory_months", dtype=Float64, description="months of unsold housing inventory"),
    ],
    source=market_context_source,
    online=True,
    description="The market a lead decides in, per city and date.",
    owner=OWNER,
    tags={"kind": "market", "origin": "public-data"},
)
