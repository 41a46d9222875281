"""Fault-injection suite (issue 7): real tcpdump, SeaweedFS and inotify.

Run with `pytest tests/faults` as root; docs/reliability.md has the results.
"""
