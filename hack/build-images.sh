#!/usr/bin/env bash
# Builds the OCI images of livemigrate's components without Docker (see
# docs/images.md): one OCI image layout per component under bin/images.
#
#   hack/build-images.sh                                  # all components
#   hack/build-images.sh livemigrate-agent                # one
#   hack/build-images.sh --push registry.example.com/livemigrate   # tagged as the chart names them
#
# Flags are those of hack/images (hack/build-images.sh --help). Needs Go,
# apt-get, apt-cache and dpkg-deb (Debian or Ubuntu).
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in go apt-get apt-cache dpkg-deb; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "build-images: $tool not found; the images are built from Debian packages with apt (docs/images.md; build/Dockerfile is the alternative with Docker)" >&2
    exit 1
  fi
done
exec go run ./hack/images "$@"
