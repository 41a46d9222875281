#!/bin/sh
# The seed's per-file hook: upload one finished, gzipped capture, then delete it.
# Called once per file by `xargs -n1` (see watch.sh), exactly like the glue
# scripts this project replaces. Needs S3_ENDPOINT, S3_DEST (s3://bucket/prefix)
# and the usual AWS_* credentials in the environment.
set -eu
f="$1"
aws s3 cp --quiet --endpoint-url "$S3_ENDPOINT" "$f" "$S3_DEST/$(basename "$f")"
rm -f "$f"
