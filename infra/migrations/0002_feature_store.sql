-- Feature store tables for Feast's PostgreSQL offline store (schema `offline`), labels, ingest bookkeeping.
-- Column names here are the feature names in feature_repo/feature_views.py; change both together, in a new migration.

-- Demographics: one row per lead per CRM update (profile CSVs, CRM exports).
CREATE TABLE IF NOT EXISTS offline.lead_demographics (
    lead_id            text        NOT NULL,
    event_timestamp    timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    age_band           text,                 -- 18-24, 25-34, 35-44, 45-54, 55+
    annual_income_inr  double precision CHECK (annual_income_inr >= 0),
    employment_type    text,                 -- salaried, self_employed, business, retired, student, other
    cibil_score        integer CHECK (cibil_score BETWEEN 300 AND 900),
    cibil_band         text,                 -- poor (<550), fair, good, very_good, excellent (750+)
    city               text,
    city_tier          smallint CHECK (city_tier BETWEEN 1 AND 3),
    household_size     smallint CHECK (household_size BETWEEN 1 AND 20),
    profession         text,
    PRIMARY KEY (lead_id, event_timestamp)
);

-- Engagement: windowed counts per lead, one row per change (written by the stream workers, step 3).
CREATE TABLE IF NOT EXISTS offline.lead_engagement (
    lead_id            text        NOT NULL,
    event_timestamp    timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    listing_views_1d   integer NOT NULL DEFAULT 0,
    listing_views_7d   integer NOT NULL DEFAULT 0,
    listing_views_30d  integer NOT NULL DEFAULT 0,
    searches_1d   integer NOT NULL DEFAULT 0,
    searches_7d   integer NOT NULL DEFAULT 0,
    searches_30d  integer NOT NULL DEFAULT 0,
    saved_listings_1d   integer NOT NULL DEFAULT 0,
    saved_listings_7d   integer NOT NULL DEFAULT 0,
    saved_listings_30d  integer NOT NULL DEFAULT 0,
    emi_calculator_uses_1d   integer NOT NULL DEFAULT 0,
    emi_calculator_uses_7d   integer NOT NULL DEFAULT 0,
    emi_calculator_uses_30d  integer NOT NULL DEFAULT 0,
    sessions_1d   integer NOT NULL DEFAULT 0,
    sessions_7d   integer NOT NULL DEFAULT 0,
    sessions_30d  integer NOT NULL DEFAULT 0,
    time_on_site_s_1d   double precision NOT NULL DEFAULT 0,
    time_on_site_s_7d   double precision NOT NULL DEFAULT 0,
    time_on_site_s_30d  double precision NOT NULL DEFAULT 0,
    emails_sent_1d   integer NOT NULL DEFAULT 0,
    emails_sent_7d   integer NOT NULL DEFAULT 0,
    emails_sent_30d  integer NOT NULL DEFAULT 0,
    emails_opened_1d   integer NOT NULL DEFAULT 0,
    emails_opened_7d   integer NOT NULL DEFAULT 0,
    emails_opened_30d  integer NOT NULL DEFAULT 0,
    emails_clicked_1d   integer NOT NULL DEFAULT 0,
    emails_clicked_7d   integer NOT NULL DEFAULT 0,
    emails_clicked_30d  integer NOT NULL DEFAULT 0,
    whatsapp_in_1d   integer NOT NULL DEFAULT 0,
    whatsapp_in_7d   integer NOT NULL DEFAULT 0,
    whatsapp_in_30d  integer NOT NULL DEFAULT 0,
    whatsapp_out_1d   integer NOT NULL DEFAULT 0,
    whatsapp_out_7d   integer NOT NULL DEFAULT 0,
    whatsapp_out_30d  integer NOT NULL DEFAULT 0,
    calls_1d   integer NOT NULL DEFAULT 0,
    calls_7d   integer NOT NULL DEFAULT 0,
    calls_30d  integer NOT NULL DEFAULT 0,
    form_submissions_1d   integer NOT NULL DEFAULT 0,
    form_submissions_7d   integer NOT NULL DEFAULT 0,
    form_submissions_30d  integer NOT NULL DEFAULT 0,
    whatsapp_reply_latency_s_30d double precision,   -- mean seconds from our message to the lead's reply
    first_touch_ts     double precision,             -- unix seconds of the lead's first event
    last_event_ts      double precision,             -- unix seconds of the lead's latest event
    PRIMARY KEY (lead_id, event_timestamp)
);

-- Market context per city and date: RBI repo rate (real, feature_repo/data/rbi_repo_rate.csv), home-loan rates,
-- property price index change and inventory where a user loads them.
CREATE TABLE IF NOT EXISTS offline.market_context (
    city               text        NOT NULL,
    event_timestamp    timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    repo_rate_pct      double precision,
    home_loan_rate_pct double precision,
    hpi_change_yoy_pct double precision,
    inventory_months   double precision,
    PRIMARY KEY (city, event_timestamp)
);

-- Labels: the outcome of a lead (converted or not) at a time; training sets are built from these rows.
CREATE TABLE IF NOT EXISTS offline.labels (
    dataset            text        NOT NULL,
    lead_id            text        NOT NULL,
    event_timestamp    timestamptz NOT NULL,
    label              smallint    NOT NULL CHECK (label IN (0, 1)),
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset, lead_id, event_timestamp)
);

-- CRM ingests: one row per run, and every rejected row with its reason (nothing is dropped silently).
CREATE TABLE IF NOT EXISTS offline.ingest_runs (
    id                 bigserial   PRIMARY KEY,
    dataset            text        NOT NULL,
    file_name          text        NOT NULL,
    file_sha256        text        NOT NULL,
    started_at         timestamptz NOT NULL DEFAULT now(),
    finished_at        timestamptz,
    rows_read          bigint      NOT NULL DEFAULT 0,
    rows_loaded        bigint      NOT NULL DEFAULT 0,
    rows_rejected      bigint      NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS offline.ingest_rejects (
    dataset            text        NOT NULL,
    file_sha256        text        NOT NULL,
    row_number         bigint      NOT NULL,       -- 1-based data row in the file (header excluded)
    lead_id            text,
    reason             text        NOT NULL,
    payload            jsonb       NOT NULL,       -- the row as read, PII columns already hashed or removed
    rejected_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset, file_sha256, row_number)
);

-- Materialization runs (offline -> online), one row per feature view per run.
CREATE TABLE IF NOT EXISTS offline.materialization_runs (
    id                 bigserial   PRIMARY KEY,
    feature_view       text        NOT NULL,
    window_start       timestamptz NOT NULL,
    window_end         timestamptz NOT NULL,
    rows_written       bigint      NOT NULL DEFAULT 0,
    rows_skipped_no_consent bigint NOT NULL DEFAULT 0,
    seconds            double precision,
    ok                 boolean     NOT NULL,
    error              text,
    finished_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS materialization_runs_view_idx ON offline.materialization_runs (feature_view, window_end);
