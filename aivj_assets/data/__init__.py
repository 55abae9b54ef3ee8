"""Data: the contract, the ingest ledger and scan, the store, the row parts, the elite set, demo data."""
