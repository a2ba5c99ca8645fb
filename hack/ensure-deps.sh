#!/usr/bin/env bash
# Installs the Debian packages that the tests, the lab and the benchmarks need,
# when they are missing. Safe to run repeatedly; does nothing when all are there.
set -euo pipefail

# Every apiserver and controller of a lab watches files with inotify; two labs
# side by side (go test runs two packages at once) exceed the common default
# of 128 inotify instances per user and fail with "too many open files".
want_inotify=1024
have_inotify=$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo "$want_inotify")
if [ "$have_inotify" -lt "$want_inotify" ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "raising fs.inotify.max_user_instances from $have_inotify to $want_inotify"
    sysctl -q -w fs.inotify.max_user_instances="$want_inotify"
  else
    echo "fs.inotify.max_user_instances is $have_inotify; labs need $want_inotify (sysctl -w fs.inotify.max_user_instances=$want_inotify as root)" >&2
  fi
fi

# The image build (hack/images, make images, its test) fetches the agent's
# Debian packages with apt-get download: apt's index must list them, which
# a fresh machine's may not.
if command -v apt-get >/dev/null 2>&1 && ! apt-get download --print-uris rsync dash coreutils ca-certificates >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "apt's index lacks the packages of the agent image; running apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
  else
    echo "apt's index lacks the packages of the agent image (hack/images); run apt-get update as root" >&2
  fi
fi

need=()
command -v rsync >/dev/null 2>&1 || need+=(rsync)
command -v ip >/dev/null 2>&1 || need+=(iproute2)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing packages: ${need[*]}; install them (apt-get install ${need[*]}) or run as root" >&2
  exit 1
fi
echo "installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"
