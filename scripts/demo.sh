#!/usr/bin/env bash
# Set up (if needed) and run the demo export end to end on a private Azurite (`--destination s3|gcs`:
# into a bucket on a private moto or gcp-storage-emulator).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m exporter demo "$@"
