"""The store: tables, engine and sessions, the one write path (`ingest`), retention."""
