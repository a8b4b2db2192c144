"""Batch and stream jobs that move lead data into the feature store (CRM ingest, materialization, Faust streams)."""
