"""Keeps: the flight recorder's requests to ship a window of the ring.

A keep comes from the CLI (`rollcap keep`), from an alert (the listener), from a
script (`POST /v1/keep`) or from the fleet (a request object in the bucket). All
four become one `KeepRequest` and go through one `Submit` (request.py).
"""
