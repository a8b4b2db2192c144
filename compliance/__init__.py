"""DPDP Act rights in every store: notices, the consent ledger, withdrawal, erasure with receipts, lineage."""
