"""Fault-injection suite (issue 7): real tcpdump, SeaweedFS and inotify; run with `pytest tests/faults`."""
