"""rollcap offload."""
