#!/usr/bin/env bash
# Builds kubectl-livemigrate for every platform of hack/krew/livemigrate.yaml
# into bin/krew/kubectl-livemigrate_<os>_<arch>.tar.gz (the
# binary alone, as krew installs it) and writes bin/krew/livemigrate.yaml
# with the version and each archive's sha256:
#
#   hack/krew.sh [VERSION]        # default: v<appVersion> of charts/livemigrate
#   kubectl krew install --manifest=bin/krew/livemigrate.yaml --archive=bin/krew/kubectl-livemigrate_linux_amd64.tar.gz
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-v$(sed -n 's/^appVersion: "\(.*\)"/\1/p' charts/livemigrate/Chart.yaml)}
out=bin/krew
rm -rf "$out" && mkdir -p "$out"
manifest=$(sed "s/VERSION/$version/g" hack/krew/livemigrate.yaml)
for platform in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64; do
	os=${platform%/*} arch=${platform#*/}
	dir=$(mktemp -d)
	CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -o "$dir/kubectl-livemigrate" ./cmd/kubectl-livemigrate
	archive="$out/kubectl-livemigrate_${os}_${arch}.tar.gz"
	tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$dir" -czf "$archive" kubectl-livemigrate
	rm -rf "$dir"
	sum=$(sha256sum "$archive" | cut -d' ' -f1)
	manifest=${manifest//SHA256_${os}_${arch}/$sum}
	echo "$archive $sum"
done
printf '%s\n' "$manifest" >"$out/livemigrate.yaml"
echo "wrote $out/livemigrate.yaml"
