"""Data: the contract, the ingest ledger, the store, dataset loading and demo data."""
