#!/bin/sh
# The seed's watcher: `tcpdump -z gzip` compresses each rotated file and gzip
# deletes the original when it is done, so a delete of X.pcap means X.pcap.gz
# is complete. sed maps the name (and drops the deletes of the .gz files that
# done.sh removes); xargs runs done.sh for one file at a time.
# sed -u: without it sed block-buffers into the pipe and nothing is uploaded
# until 4 KiB of names have piled up (a real bug of such scripts; we spare the
# seed from it).
set -eu
dir="$1"
here="$(cd "$(dirname "$0")" && pwd)"
inotifywait -q -m -e delete --format '%w%f' "$dir" \
  | sed -un 's/\.pcap$/.pcap.gz/p' \
  | xargs -n1 "$here/done.sh"
