"""Flow summaries: one small gzip NDJSON object per stored capture, written
by the offload from the same streaming read that compresses it (docs/flows.md).

- summary.py: the summariser (pcap chunks in, flow rows out)
- communityid.py: the Community ID v1 flow hash (Zeek, Suricata)
- index.py: where the summaries live in the bucket, their body, and the reader
"""
