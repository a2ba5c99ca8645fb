#!/usr/bin/env bash
# Builds the binaries the lab (test/lab) runs into bin/ at the repository root.
#
# Third-party binaries are pinned (hack/tools/lab/go.mod for Kubernetes, etcd
# and kubectl; hack/tools/lab/karmada/go.mod for the stock Karmada binaries;
# kwok by go install) and skipped when bin/.stamp/<name> already records the
# pinned version. The project's own binaries are always rebuilt with go build,
# which is a no-op when nothing changed.
#
# Usage: hack/lab-binaries.sh [name...]   (default: everything)
# Env:   BIN_DIR (default <repo>/bin), FORCE=1 rebuilds pinned binaries too.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${BIN_DIR:-${ROOT}/bin}"
STAMP_DIR="${BIN_DIR}/.stamp"
TOOLS="${ROOT}/hack/tools/lab"
mkdir -p "${BIN_DIR}" "${STAMP_DIR}"

# Versions come from the tools modules' go.mod files (the single source of
# truth); kwok's is here and in test/lab (kwokVersion), which reads its stages.
modver() { awk -v m="$2" '$1 == m { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1/go.mod"; }
K8S_VERSION="$(modver "${TOOLS}" k8s.io/kubernetes)"
ETCD_VERSION="$(modver "${TOOLS}" go.etcd.io/etcd/server/v3)"
KARMADA_VERSION="$(modver "${TOOLS}/karmada" github.com/karmada-io/karmada)"
KWOK_VERSION="v0.8.0"
for v in K8S_VERSION ETCD_VERSION KARMADA_VERSION; do
  if [[ -z "${!v}" ]]; then
    echo "lab-binaries: cannot read ${v} from the go.mod files under ${TOOLS}" >&2
    exit 1
  fi
done

k8s_ldflags() {
  local major minor
  major="$(echo "${K8S_VERSION#v}" | cut -d. -f1)"
  minor="$(echo "${K8S_VERSION#v}" | cut -d. -f2)"
  local f=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X ${pkg}.gitVersion=${K8S_VERSION} -X ${pkg}.gitMajor=${major} -X ${pkg}.gitMinor=${minor}"
    f+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
  done
  echo "-s -w${f}"
}

karmada_ldflags() {
  local pkg=github.com/karmada-io/karmada/pkg/version
  echo "-s -w -X ${pkg}.gitVersion=${KARMADA_VERSION} -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
}

# name|version|module dir|package|ldflags kind
PINNED=(
  "etcd|${ETCD_VERSION}|${TOOLS}|go.etcd.io/etcd/server/v3|none"
  "kube-apiserver|${K8S_VERSION}|${TOOLS}|k8s.io/kubernetes/cmd/kube-apiserver|k8s"
  "kube-controller-manager|${K8S_VERSION}|${TOOLS}|k8s.io/kubernetes/cmd/kube-controller-manager|k8s"
  "kube-scheduler|${K8S_VERSION}|${TOOLS}|k8s.io/kubernetes/cmd/kube-scheduler|k8s"
  "kubectl|${K8S_VERSION}|${TOOLS}|k8s.io/kubernetes/cmd/kubectl|k8s"
  "karmada-aggregated-apiserver|${KARMADA_VERSION}|${TOOLS}/karmada|github.com/karmada-io/karmada/cmd/aggregated-apiserver|karmada"
  "karmada-controller-manager|${KARMADA_VERSION}|${TOOLS}/karmada|github.com/karmada-io/karmada/cmd/controller-manager|karmada"
  "karmada-webhook|${KARMADA_VERSION}|${TOOLS}/karmada|github.com/karmada-io/karmada/cmd/webhook|karmada"
  "karmada-scheduler|${KARMADA_VERSION}|${TOOLS}/karmada|github.com/karmada-io/karmada/cmd/scheduler|karmada"
  "kwok|${KWOK_VERSION}|-|sigs.k8s.io/kwok/cmd/kwok|install"
)

# The project's own binaries the lab runs, built from the main module at
# every run (go build does nothing when they are up to date). Commands not in
# this checkout yet are skipped. test/lab also rebuilds them when it starts.
PROJECT=(
  livemigrate-scheduler
  livemigrate-prober
  livemigrate-agent
  livemigrate-descheduler
)

build_pinned() {
  local name="$1" version="$2" dir="$3" pkg="$4" kind="$5"
  local stamp="${STAMP_DIR}/${name}"
  # The stamp is the version plus a digest of the module's go.sum, so a
  # changed dependency rebuilds too.
  local want="${version}"
  if [[ "${dir}" != "-" ]]; then
    want="${version} $(sha256sum "${dir}/go.sum" | cut -c1-16)"
  fi
  if [[ "${FORCE:-}" != "1" && -x "${BIN_DIR}/${name}" && -f "${stamp}" && "$(cat "${stamp}")" == "${want}" ]]; then
    echo "lab-binaries: ${name} ${version} up to date"
    return
  fi
  echo "lab-binaries: building ${name} ${version}"
  local start end ldflags=""
  start="$(date +%s)"
  case "${kind}" in
    k8s) ldflags="$(k8s_ldflags)" ;;
    karmada) ldflags="$(karmada_ldflags)" ;;
    none) ldflags="-s -w" ;;
  esac
  rm -f "${stamp}"
  if [[ "${kind}" == "install" ]]; then
    local tmp
    tmp="$(mktemp -d)"
    GOBIN="${tmp}" GOFLAGS=-mod=mod CGO_ENABLED=0 \
      go install -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${version}" "${pkg}@${version}"
    mv "${tmp}/${name}" "${BIN_DIR}/${name}"
    rmdir "${tmp}"
  else
    (cd "${dir}" && CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly" go build -trimpath -ldflags "${ldflags}" -o "${BIN_DIR}/${name}" "${pkg}")
  fi
  end="$(date +%s)"
  echo "${want}" >"${stamp}"
  echo "lab-binaries: built ${name} in $((end - start))s"
  echo "$(date -u +%FT%TZ) ${name} ${version} $((end - start))s" >>"${BIN_DIR}/.build-times"
}

build_project() {
  local name="$1"
  if [[ ! -d "${ROOT}/cmd/${name}" ]]; then
    echo "lab-binaries: cmd/${name} does not exist yet, skipping it"
    return
  fi
  local start end
  start="$(date +%s)"
  (cd "${ROOT}" && go build -o "${BIN_DIR}/${name}" "./cmd/${name}")
  end="$(date +%s)"
  echo "lab-binaries: built ${name} in $((end - start))s"
}

selected() {
  local name="$1"
  shift
  [[ $# -eq 0 ]] && return 0
  local n
  for n in "$@"; do [[ "${n}" == "${name}" ]] && return 0; done
  return 1
}

for entry in "${PINNED[@]}"; do
  IFS='|' read -r name version dir pkg kind <<<"${entry}"
  if selected "${name}" "$@"; then
    build_pinned "${name}" "${version}" "${dir}" "${pkg}" "${kind}"
  fi
done
for name in "${PROJECT[@]}"; do
  if selected "${name}" "$@"; then
    build_project "${name}"
  fi
done
