"""t2igan."""
