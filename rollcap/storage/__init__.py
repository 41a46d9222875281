"""rollcap storage."""
