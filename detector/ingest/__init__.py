"""Log ingestion: files -> canonical events (see docs/ingest.md)."""
