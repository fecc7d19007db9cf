"""A hospital's own service: its settings, data, privacy ledger, audit log and release policy."""
