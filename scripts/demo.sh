#!/usr/bin/env bash
# Set up (if needed) and run the demo export end to end on a private Azurite (`--destination s3|gcs`:
# into a bucket on a private moto or gcp-storage-emulator).
# `--console [--port 7071]`: instead, the console on this machine with the development sign-in, sample
# events and a container and buckets of every type ready; it prints the URL and what to paste in each
# field, and runs until Ctrl-C (which stops every server it started).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The demo's destinations (Azurite, moto, the GCS emulator) are on loopback over http: local only, never in Azure.
export EXPORT_ALLOW_PRIVATE_ENDPOINTS=true
exec .venv/bin/python -m exporter demo "$@"
