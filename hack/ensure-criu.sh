#!/usr/bin/env bash
# Installs what the lab's node runtime needs to run pods as runc containers
# and checkpoint them with CRIU: runc and iptables from Debian (CRIU locks a
# container's network with iptables while it dumps it), and CRIU 4.2.1 built
# from Debian's source tarball.
#
# Debian bookworm's criu 3.17.1 fails on current kernels
# ("kerndat_vdso_fill_symtable failed") and 4.1.1 cannot dump a TCP socket
# since Linux 6.16 (SO_PASSCRED is refused on TCP sockets); 4.2.1 can.
#
# CRIU is built once per machine into a cache outside the clone
# ($LIVEMIGRATE_CACHE, default /var/cache/livemigrate as root, else
# ${XDG_CACHE_HOME:-~/.cache}/livemigrate), so another clone or CI run on the
# same machine reuses it. The script prints the criu binary's path on its last
# line and does nothing else when everything is there. Safe to run repeatedly,
# and from several clones at once (the build holds a lock).
set -euo pipefail

CRIU_VERSION=4.2.1
CRIU_TARBALL=criu_${CRIU_VERSION}.orig.tar.xz
CRIU_SHA256=29ec0ee09e296479fe7048c80980e8ef1d0684d0b0204c2b101dfea19f6725b9
CRIU_URL=${CRIU_URL:-http://deb.debian.org/debian/pool/main/c/criu/${CRIU_TARBALL}}

# Build dependencies of CRIU, all from Debian bookworm.
BUILD_DEPS=(build-essential libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev protobuf-compiler
  libnl-3-dev libnet1-dev libcap-dev pkg-config python3-protobuf libbsd-dev libgnutls28-dev
  libnftables-dev uuid-dev libaio-dev curl xz-utils ca-certificates)

if [ -n "${LIVEMIGRATE_CACHE:-}" ]; then
  cache=$LIVEMIGRATE_CACHE
elif [ "$(id -u)" -eq 0 ]; then
  cache=/var/cache/livemigrate
else
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/livemigrate
fi
prefix=$cache/criu-$CRIU_VERSION
criu=$prefix/criu

apt_install() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: $*; install them (apt-get install $*) or run as root" >&2
    exit 1
  fi
  echo "installing $*" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "$@" >&2; then
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends "$@" >&2
  fi
}

need=()
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
if [ ${#need[@]} -gt 0 ]; then
  apt_install "${need[@]}"
fi

if [ -x "$criu" ] && "$criu" --version 2>/dev/null | grep -q "Version: $CRIU_VERSION\$"; then
  echo "$criu"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/criu.lock"
flock 9
if [ -x "$criu" ] && "$criu" --version 2>/dev/null | grep -q "Version: $CRIU_VERSION\$"; then
  echo "$criu"
  exit 0
fi

missing=()
for p in "${BUILD_DEPS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt_install "${missing[@]}"
fi

work=$(mktemp -d "$cache/criu-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "downloading $CRIU_URL" >&2
curl -fsSL --retry 3 -o "$work/$CRIU_TARBALL" "$CRIU_URL"
if ! echo "$CRIU_SHA256  $work/$CRIU_TARBALL" | sha256sum -c --status; then
  echo "$CRIU_TARBALL: sha256 $(sha256sum "$work/$CRIU_TARBALL" | cut -d' ' -f1), want $CRIU_SHA256" >&2
  exit 1
fi
tar -xJf "$work/$CRIU_TARBALL" -C "$work"
src=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'criu-*' | head -n1)
echo "building CRIU $CRIU_VERSION in $src" >&2
make -C "$src" -j"$(nproc)" criu >"$work/build.log" 2>&1 || { tail -n 40 "$work/build.log" >&2; exit 1; }
rm -rf "$prefix"
mkdir -p "$prefix"
install -m 0755 "$src/criu/criu" "$criu"
"$criu" --version >&2
echo "$criu"
