#!/usr/bin/env bash
# Runs a real kubelet with real CRI-O on this machine, as far as it goes
# here (docs/real-node.md): opt-in, never part of make test.
#
#   hack/real-node.sh build              # crio, pinns, kubelet, crictl into bin/; conmon, CNI plugins, runc, CRIU
#   hack/real-node.sh crio               # a lab registry with the lab app and pause images, and crio on them
#   hack/real-node.sh sandbox            # crictl: a pod sandbox and a lab app container, then crictl checkpoint
#   hack/real-node.sh kubelet KUBECONFIG # a kubelet on crio, registered with that cluster as node $NODE_NAME
#   hack/real-node.sh pod KUBECONFIG     # a lab app pod on that node, the kubelet checkpoint API, then a restore
#   hack/real-node.sh freeze KUBECONFIG  # the pod frozen as the agent freezes it: the checkpoint API fails
#   hack/real-node.sh down               # stop what the above started and remove $REAL_NODE_DIR
#
# KUBECONFIG is a lab member's (livemigrate-lab up prints it). Everything
# runs as root below $REAL_NODE_DIR (default /tmp/lm-real-node); the
# processes it starts are recorded in $REAL_NODE_DIR/pids and down stops only
# those.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="${BIN_DIR:-${ROOT}/bin}"
DIR="${REAL_NODE_DIR:-/tmp/lm-real-node}"
NODE_NAME="${NODE_NAME:-real-node-1}"
KUBELET_PORT="${KUBELET_PORT:-10350}"
# CRI-O v1.34.0 is the newest release the Go module proxy serves here
# (v1.35.x and the version list answer 403); CRI v1 is the same for the
# v1.35 kubelet. cri-tools v1.34.0 likewise.
CRIO_VERSION="${CRIO_VERSION:-v1.34.0}"
CRICTL_VERSION="${CRICTL_VERSION:-v1.34.0}"
# CRI-O's build tags without gpgme, btrfs and devicemapper (no -dev packages
# needed but libseccomp-dev).
CRIO_TAGS="containers_image_openpgp containers_image_ostree_stub seccomp exclude_graphdriver_btrfs btrfs_noversion exclude_graphdriver_devicemapper libdm_no_deferred_remove"
if [[ -n "${LIVEMIGRATE_CACHE:-}" ]]; then
  CACHE="${LIVEMIGRATE_CACHE}"
else
  CACHE=/var/cache/livemigrate
fi

log() { echo "real-node: $*" >&2; }
die() {
  log "$*"
  exit 1
}

modver() { awk -v m="$2" '$1 == m { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1/go.mod"; }

apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "${p}" 2>/dev/null | grep -q 'install ok installed' || missing+=("${p}")
  done
  [[ ${#missing[@]} -eq 0 ]] && return
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update -qq >&2 && apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; }
}

timed() {
  local name="$1" start
  shift
  start="$(date +%s)"
  "$@"
  log "built ${name} in $(($(date +%s) - start))s"
  echo "$(date -u +%FT%TZ) ${name} $(($(date +%s) - start))s" >>"${BIN_DIR}/.build-times"
}

build_crio() {
  local stamp="${BIN_DIR}/.stamp/crio"
  if [[ -x "${BIN_DIR}/crio" && -f "${stamp}" && "$(cat "${stamp}")" == "${CRIO_VERSION}" ]]; then
    log "crio ${CRIO_VERSION} up to date"
  else
    # go install pkg@version refuses it: it reads the module's version list
    # for deprecations, which the proxy answers 403. Build the downloaded
    # module's own source instead, with its own go.sum.
    local src="${CACHE}/cri-o-src-${CRIO_VERSION}" dl
    if [[ ! -f "${src}/go.mod" ]]; then
      dl="$(cd /tmp && go mod download -json "github.com/cri-o/cri-o@${CRIO_VERSION}" | awk -F'"' '$2 == "Dir" { print $4 }')"
      [[ -n "${dl}" ]] || die "go mod download github.com/cri-o/cri-o@${CRIO_VERSION} failed"
      rm -rf "${src}.tmp"
      cp -r "${dl}" "${src}.tmp"
      chmod -R u+w "${src}.tmp"
      mv "${src}.tmp" "${src}"
    fi
    timed crio bash -c "cd '${src}' && CGO_ENABLED=1 GOFLAGS='-buildvcs=false -mod=readonly' go build -trimpath -tags '${CRIO_TAGS}' -ldflags '-s -w' -o '${BIN_DIR}/crio' ./cmd/crio"
    echo "${CRIO_VERSION}" >"${stamp}"
  fi
  if [[ ! -x "${BIN_DIR}/pinns" ]]; then
    cc -std=c99 -O3 -Wall -Wextra -static -o "${BIN_DIR}/pinns" "${CACHE}/cri-o-src-${CRIO_VERSION}"/pinns/src/*.c
  fi
}

build_kubelet() {
  local tools="${ROOT}/hack/tools/realnode" version major minor f="" pkg
  version="$(modver "${tools}" k8s.io/kubernetes)"
  local want="${version} $(sha256sum "${tools}/go.sum" | cut -c1-16)"
  local stamp="${BIN_DIR}/.stamp/kubelet"
  if [[ -x "${BIN_DIR}/kubelet" && -f "${stamp}" && "$(cat "${stamp}")" == "${want}" ]]; then
    log "kubelet ${version} up to date"
    return
  fi
  major="$(echo "${version#v}" | cut -d. -f1)"
  minor="$(echo "${version#v}" | cut -d. -f2)"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    f+=" -X ${pkg}.gitVersion=${version} -X ${pkg}.gitMajor=${major} -X ${pkg}.gitMinor=${minor}"
    f+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
  done
  timed kubelet bash -c "cd '${tools}' && CGO_ENABLED=0 GOFLAGS='-buildvcs=false -mod=readonly' go build -trimpath -ldflags '-s -w${f}' -o '${BIN_DIR}/kubelet' k8s.io/kubernetes/cmd/kubelet"
  echo "${want}" >"${stamp}"
}

build_crictl() {
  local stamp="${BIN_DIR}/.stamp/crictl"
  if [[ -x "${BIN_DIR}/crictl" && -f "${stamp}" && "$(cat "${stamp}")" == "${CRICTL_VERSION}" ]]; then
    log "crictl ${CRICTL_VERSION} up to date"
    return
  fi
  timed crictl env GOBIN="${BIN_DIR}" CGO_ENABLED=0 GOFLAGS=-buildvcs=false go install -trimpath -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRICTL_VERSION}" "sigs.k8s.io/cri-tools/cmd/crictl@${CRICTL_VERSION}"
  echo "${CRICTL_VERSION}" >"${stamp}"
}

cmd_build() {
  mkdir -p "${BIN_DIR}/.stamp" "${CACHE}"
  apt_install conmon containernetworking-plugins golang-github-containers-common libseccomp-dev iptables runc
  "${ROOT}/hack/ensure-criu.sh" >/dev/null
  build_crio
  build_kubelet
  build_crictl
  (cd "${ROOT}" && go build -o "${BIN_DIR}/labapp" ./test/labapp && go build -o "${BIN_DIR}/labnode" ./test/labnode/cmd/labnode)
  (cd "${ROOT}" && CGO_ENABLED=0 go build -o "${BIN_DIR}/realnode-pause" ./hack/realnode/pause && go build -o "${BIN_DIR}/realnode" ./hack/realnode)
  log "crio: $("${BIN_DIR}/crio" --version 2>&1 | head -1), kubelet: $("${BIN_DIR}/kubelet" --version), conmon: $(conmon --version | head -1), runc: $(runc --version | head -1), criu: $("$("${ROOT}/hack/ensure-criu.sh")" --version | head -1)"
}

# start NAME CMD... runs CMD in the background with its output in
# $DIR/logs/NAME.log and records its PID.
start() {
  local name="$1"
  shift
  mkdir -p "${DIR}/logs"
  setsid "$@" >"${DIR}/logs/${name}.log" 2>&1 </dev/null &
  echo "$! ${name}" >>"${DIR}/pids"
  log "started ${name} (PID $!, log ${DIR}/logs/${name}.log)"
}

wait_for() {
  local what="$1" timeout="$2" i
  shift 2
  for ((i = 0; i < timeout * 2; i++)); do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.5
  done
  die "timed out after ${timeout}s waiting for ${what}"
}

registry_host() { cat "${DIR}/registry-host"; }

crictl() { "${BIN_DIR}/crictl" --config "${DIR}/crictl.yaml" --runtime-endpoint "unix://${DIR}/crio.sock" --image-endpoint "unix://${DIR}/crio.sock" --timeout 60s "$@"; }

cmd_crio() {
  [[ -x "${BIN_DIR}/crio" && -x "${BIN_DIR}/labnode" ]] || die "run hack/real-node.sh build first"
  local criu
  criu="$("${ROOT}/hack/ensure-criu.sh")"
  mkdir -p "${DIR}"/{bin,cni,registry,storage,run,logs,ns,exits,attach,runc,containers}
  echo "runtime-endpoint: unix://${DIR}/crio.sock" >"${DIR}/crictl.yaml"

  # The lab registry (test/labnode), on a free port.
  start registry "${BIN_DIR}/labnode" registry --listen=127.0.0.1:0 --dir="${DIR}/registry"
  wait_for "the registry's address" 30 grep -q : "${DIR}/logs/registry.log"
  head -1 "${DIR}/logs/registry.log" >"${DIR}/registry-host"
  local reg
  reg="$(registry_host)"
  ("${BIN_DIR}/realnode" images --registry "${reg}" --labapp "${BIN_DIR}/labapp" --pause "${BIN_DIR}/realnode-pause")

  # CRIU as runc runs it: hardware breakpoints never fire in these virtual
  # machines, so a dump waits forever for its tasks to trap without
  # CRIU_FAULT=130 (CRIU's own FI_NO_BREAKPOINTS switch).
  printf '#!/bin/sh\nCRIU_FAULT=130 exec %s "$@"\n' "${criu}" >"${DIR}/bin/criu"
  chmod +x "${DIR}/bin/criu"

  # A bridge on a private subnet that only this machine routes: pods reach
  # the host, nothing else (no masquerade).
  cat >"${DIR}/cni/10-lm-real-node.conflist" <<'EOF'
{
  "cniVersion": "1.0.0",
  "name": "lm-real-node",
  "plugins": [
    {"type": "bridge", "bridge": "lmreal0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.250.0.0/24"}]], "routes": [{"dst": "10.250.0.0/24"}]}},
    {"type": "loopback"}
  ]
}
EOF
  cat >"${DIR}/crio.conf" <<EOF
[crio]
root = "${DIR}/storage"
runroot = "${DIR}/run"
storage_driver = "vfs"
log_dir = "${DIR}/containers"
version_file = "${DIR}/run/version"
version_file_persist = "${DIR}/version"
clean_shutdown_file = "${DIR}/clean.shutdown"

[crio.api]
listen = "${DIR}/crio.sock"
stream_address = "127.0.0.1"
stream_port = "0"

[crio.runtime]
default_runtime = "runc"
cgroup_manager = "cgroupfs"
conmon_cgroup = "pod"
enable_criu_support = true
drop_infra_ctr = true
pinns_path = "${BIN_DIR}/pinns"
namespaces_dir = "${DIR}/ns"
container_exits_dir = "${DIR}/exits"
container_attach_socket_dir = "${DIR}/attach"
irqbalance_config_file = ""

[crio.runtime.runtimes.runc]
runtime_path = "$(command -v runc)"
runtime_type = "oci"
runtime_root = "${DIR}/runc"
monitor_path = "$(command -v conmon)"
monitor_cgroup = "pod"
monitor_env = ["PATH=${DIR}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]

# No signature_policy: CRI-O refuses to restore a checkpoint when one is set
# ("user specified image not specified, cannot verify image signature");
# the system's /etc/containers/policy.json (golang-github-containers-common)
# accepts anything.
[crio.image]
pause_image = "${reg}/livemigrate/pause:latest"
insecure_registries = ["${reg}"]

[crio.network]
network_dir = "${DIR}/cni"
plugin_dirs = ["/usr/lib/cni"]

[crio.nri]
enable_nri = false

[crio.metrics]
enable_metrics = false
EOF
  # The hugetlb controller is on the cgroup v2 side of these hybrid
  # machines, with no v1 hierarchy: CRI-O reads /proc/cgroups, sees hugetlb
  # and passes the kubelet's hugepage limits on, and runc (cgroup v1 mode)
  # then fails every kubelet container with "cannot set hugetlb limit:
  # container could not join or create cgroup". crio runs in a mount
  # namespace of its own where /proc/cgroups lacks hugetlb.
  grep -v '^hugetlb' /proc/cgroups >"${DIR}/proc-cgroups"
  start crio unshare --mount --propagation private sh -c "mount --bind '${DIR}/proc-cgroups' /proc/cgroups && PATH='${DIR}/bin:${PATH}' exec '${BIN_DIR}/crio' --config '${DIR}/crio.conf' --config-dir '${DIR}/crio.conf.d' --log-level info"
  wait_for "crio's socket" 120 crictl version
  crictl version
  crictl info | grep -A3 -E '"(RuntimeReady|NetworkReady)"' || true
}

cmd_sandbox() {
  local reg image pod ctr
  reg="$(registry_host)"
  image="${reg}/livemigrate/labapp:latest"
  crictl rmp -fa >/dev/null
  crictl pull "${image}"
  # Each container in a PID namespace of its own (pid 1, CONTAINER), as the
  # kubelet asks unless shareProcessNamespace: a pod PID namespace needs the
  # pause (infra) container, which CRI-O gives oom_score_adj -998, and
  # lowering oom_score_adj needs CAP_SYS_RESOURCE, which root lacks here
  # ("nsexec: failed to update /proc/self/oom_score_adj: Permission denied").
  cat >"${DIR}/pod.json" <<EOF
{"metadata": {"name": "labapp-sandbox", "namespace": "default", "uid": "lm-real-node-sandbox-1", "attempt": 1},
 "log_directory": "${DIR}/podlogs",
 "linux": {"cgroup_parent": "/lm-real-node/crictl", "security_context": {"namespace_options": {"pid": 1}}}}
EOF
  mkdir -p "${DIR}/podlogs" "${DIR}/sandbox-data"
  cat >"${DIR}/container.json" <<EOF
{"metadata": {"name": "labapp"}, "image": {"image": "${image}"},
 "args": ["run", "--memory=16Mi", "--dirty-rate=1Mi", "--tick=100ms", "--log=/data/counter.log", "--state-dir=/data/state"],
 "mounts": [{"container_path": "/data", "host_path": "${DIR}/sandbox-data"}],
 "log_path": "labapp.log", "linux": {"security_context": {"namespace_options": {"pid": 1}}}}
EOF
  pod="$(crictl runp "${DIR}/pod.json")"
  ctr="$(crictl create "${pod}" "${DIR}/container.json" "${DIR}/pod.json")"
  crictl start "${ctr}"
  sleep 2
  crictl ps -a
  tail -2 "${DIR}/sandbox-data/counter.log"
  local t0
  t0="$(date +%s.%N)"
  crictl checkpoint --export="${DIR}/sandbox-checkpoint.tar" "${ctr}"
  log "crictl checkpoint took $(echo "$(date +%s.%N) - ${t0}" | bc)s"
  ls -la "${DIR}/sandbox-checkpoint.tar"
  tar tf "${DIR}/sandbox-checkpoint.tar" | sort | tr '\n' ' '
  echo
  tar xOf "${DIR}/sandbox-checkpoint.tar" dump.log | grep -E 'Version:|Dumping finished'

  # Restore into a new sandbox: CRI-O restores a container whose image is a
  # checkpoint archive (a file) or checkpoint image. The source keeps
  # running, so its open counter log grows past the size CRIU recorded:
  # the restore gets a copy of the volume taken with the checkpoint's log.
  crictl stop "${ctr}" >/dev/null
  mkdir -p "${DIR}/restored-data"
  cp -a "${DIR}/sandbox-data/." "${DIR}/restored-data/"
  sed 's/labapp-sandbox/labapp-restored/; s/sandbox-1/sandbox-2/' "${DIR}/pod.json" >"${DIR}/pod-restored.json"
  sed "s#\"image\": {\"image\": \"${image}\"}#\"image\": {\"image\": \"${DIR}/sandbox-checkpoint.tar\", \"user_specified_image\": \"${DIR}/sandbox-checkpoint.tar\"}#; s#${DIR}/sandbox-data#${DIR}/restored-data#" "${DIR}/container.json" >"${DIR}/container-restored.json"
  pod="$(crictl runp "${DIR}/pod-restored.json")"
  t0="$(date +%s.%N)"
  ctr="$(crictl create "${pod}" "${DIR}/container-restored.json" "${DIR}/pod-restored.json")"
  crictl start "${ctr}"
  log "crictl create+start from the checkpoint took $(echo "$(date +%s.%N) - ${t0}" | bc)s"
  sleep 2
  crictl ps -a
  log "restored counter log: $(tail -1 "${DIR}/sandbox-data/counter.log") was the source's last value; the restored container wrote: $(tail -3 "${DIR}/restored-data/counter.log" | tr '\n' ' ')"
}

cmd_kubelet() {
  local kubeconfig="${1:-}"
  [[ -f "${kubeconfig}" ]] || die "usage: hack/real-node.sh kubelet KUBECONFIG (a lab member's kubeconfig)"
  [[ -x "${BIN_DIR}/kubelet" ]] || die "run hack/real-node.sh build first"
  [[ -x "${BIN_DIR}/kubectl" ]] || die "no ${BIN_DIR}/kubectl: run hack/lab-binaries.sh kubectl"
  mkdir -p "${DIR}/kubelet"
  # The kubelet's cgroupRoot must exist in every cgroup v1 hierarchy.
  local h
  for h in /sys/fs/cgroup/*/; do
    [[ "${h}" == */unified/ ]] && continue
    mkdir -p "${h}lm-real-node"
  done
  if [[ -f /sys/fs/cgroup/cpuset/cpuset.cpus ]]; then
    cat /sys/fs/cgroup/cpuset/cpuset.cpus >/sys/fs/cgroup/cpuset/lm-real-node/cpuset.cpus
    cat /sys/fs/cgroup/cpuset/cpuset.mems >/sys/fs/cgroup/cpuset/lm-real-node/cpuset.mems
  fi
  cat >"${DIR}/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# These machines mount cgroup v1 hierarchies beside cgroup v2 (hybrid):
# the kubelet refuses to start on cgroup v1 unless told not to.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /lm-real-node
containerRuntimeEndpoint: unix://${DIR}/crio.sock
address: 127.0.0.1
port: ${KUBELET_PORT}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $((KUBELET_PORT + 1))
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
failSwapOn: false
protectKernelDefaults: true
featureGates:
  ContainerCheckpoint: true
resolvConf: /etc/resolv.conf
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
EOF
  # The kubelet sets six kernel sysctls when they differ from what it wants
  # (vm.overcommit_memory=1, kernel.panic=10, kernel.panic_on_oops=1, ...),
  # or refuses to start with protectKernelDefaults. This machine is shared:
  # the kubelet runs in a mount namespace of its own where those /proc/sys
  # files are bind mounts of files holding the values it wants, with
  # protectKernelDefaults so that it never writes one. The host's values stay
  # as they are. The cost: mounts the kubelet makes (secret, configMap and
  # projected volumes) are not seen by CRI-O; the pods here use hostPath.
  mkdir -p "${DIR}/sysctl"
  local binds="" f v
  for f in vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1 kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000; do
    v="${f#*=}"
    f="${f%=*}"
    echo "${v}" >"${DIR}/sysctl/${f//\//.}"
    binds+="mount --bind ${DIR}/sysctl/${f//\//.} /proc/sys/${f} && "
  done
  start kubelet unshare --mount --propagation private sh -c "mount --make-rprivate /proc && ${binds} exec '${BIN_DIR}/kubelet' \
    --config='${DIR}/kubelet.yaml' --kubeconfig='${kubeconfig}' --root-dir='${DIR}/kubelet' --hostname-override='${NODE_NAME}' \
    --node-labels=lab.livemigrate.io/real-node=true --v=2"
  wait_for "node ${NODE_NAME} Ready" 180 bash -c "'${BIN_DIR}/kubectl' --kubeconfig '${kubeconfig}' get node '${NODE_NAME}' -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
  "${BIN_DIR}/kubectl" --kubeconfig "${kubeconfig}" get node "${NODE_NAME}" -o wide
}

kc() { "${BIN_DIR}/kubectl" --kubeconfig "${KC}" "$@"; }

# labapp_pod NAME IMAGE STATE_DIR prints a lab app pod on this node. Its
# label keeps the lab's kwok from marking it Running (kwok manages every
# node of a lab member, this one too).
labapp_pod() {
  cat <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $1
  namespace: default
  labels:
    app: labapp-real-node
    lab.livemigrate.io/runtime: real-node
spec:
  nodeName: ${NODE_NAME}
  terminationGracePeriodSeconds: 5
  containers:
  - name: labapp
    image: $2
    imagePullPolicy: IfNotPresent
    args: ["run", "--memory=16Mi", "--dirty-rate=1Mi", "--tick=100ms", "--log=", "--state-dir=/state"]
    volumeMounts:
    - {name: state, mountPath: /state}
  volumes:
  - name: state
    hostPath: {path: $3, type: DirectoryOrCreate}
EOF
}

# container_pid POD prints the host PID of the pod's labapp container.
container_pid() {
  local id
  id="$(crictl ps -q --name labapp --label "io.kubernetes.pod.name=$1" | head -1)"
  [[ -n "${id}" ]] || return 1
  crictl inspect -o go-template --template '{{.info.pid}}' "${id}"
}

counter() { "${BIN_DIR}/realnode" counter --state-dir "$1" --pid "$2"; }

cmd_pod() {
  KC="${1:-}"
  [[ -f "${KC}" ]] || die "usage: hack/real-node.sh pod KUBECONFIG (a lab member's kubeconfig)"
  local reg src_state="${DIR}/pods/labapp-src" dst_state="${DIR}/pods/labapp-restored" pid out archive ref t0
  reg="$(registry_host)"
  mkdir -p "${src_state}" "${dst_state}"
  labapp_pod labapp-src "${reg}/livemigrate/labapp:latest" "${src_state}" | kc apply -f -
  kc wait --for=condition=Ready pod/labapp-src --timeout=180s
  kc get pod labapp-src -o wide
  pid="$(container_pid labapp-src)"
  log "labapp-src: host PID ${pid}, counter $(counter "${src_state}" "${pid}")"

  t0="$(date +%s.%N)"
  out="$(curl -sSk -X POST "https://127.0.0.1:${KUBELET_PORT}/checkpoint/default/labapp-src/labapp?timeout=120")"
  log "kubelet checkpoint API answered in $(echo "$(date +%s.%N) - ${t0}" | bc)s: ${out}"
  archive="$(echo "${out}" | sed -n 's/.*"items":\["\([^"]*\)".*/\1/p')"
  [[ -f "${archive}" ]] || die "no checkpoint archive in the answer: ${out}"
  ls -la "${archive}"
  tar tf "${archive}" | sort | tr '\n' ' '
  echo
  log "labapp-src after the checkpoint: counter $(counter "${src_state}" "${pid}") (it keeps running)"

  ref="${reg}/livemigrate/checkpoint-labapp:$(date +%s)"
  ("${BIN_DIR}/realnode" checkpoint-image --archive "${archive}" --container labapp --ref "${ref}")
  kc delete pod labapp-src --wait=true --timeout=120s
  # The layout the source wrote still describes the restored process's
  # memory (CRIU restores it at the same address); the restored process
  # does not write it again.
  cp "${src_state}/layout.json" "${dst_state}/layout.json"
  labapp_pod labapp-restored "${ref}" "${dst_state}" | kc apply -f -
  kc wait --for=condition=Ready pod/labapp-restored --timeout=180s
  kc get pod labapp-restored -o wide
  pid="$(container_pid labapp-restored)"
  log "labapp-restored: host PID ${pid}, counter $(counter "${dst_state}" "${pid}")"
  sleep 2
  log "labapp-restored 2s later: counter $(counter "${dst_state}" "${pid}")"
}

# cmd_freeze shows why the agent's whole-pod freeze and CRI-O's checkpoint
# do not mix: with the pod's freezer cgroup FROZEN, the kubelet checkpoint
# API fails after CRIU's 10 s freeze timeout ("Unseizable non-zombie …
# state D"); the pod is thawed afterwards.
cmd_freeze() {
  KC="${1:-}"
  [[ -f "${KC}" ]] || die "usage: hack/real-node.sh freeze KUBECONFIG (a lab member's kubeconfig)"
  local reg state="${DIR}/pods/labapp-freeze" uid cg out
  reg="$(registry_host)"
  mkdir -p "${state}"
  labapp_pod labapp-freeze "${reg}/livemigrate/labapp:latest" "${state}" | kc apply -f -
  kc wait --for=condition=Ready pod/labapp-freeze --timeout=180s
  uid="$(kc get pod labapp-freeze -o jsonpath='{.metadata.uid}')"
  cg="$(find /sys/fs/cgroup/freezer/lm-real-node -maxdepth 3 -type d -name "pod${uid}")"
  [[ -n "${cg}" ]] || die "no freezer cgroup for pod ${uid}"
  echo FROZEN >"${cg}/freezer.state"
  log "pod cgroup ${cg}: $(cat "${cg}/freezer.state")"
  out="$(curl -sSk -m 200 -X POST "https://127.0.0.1:${KUBELET_PORT}/checkpoint/default/labapp-freeze/labapp?timeout=90" || true)"
  echo THAWED >"${cg}/freezer.state"
  log "kubelet checkpoint API with the pod frozen: ${out}"
  grep -h -E 'Timeout reached|Unseizable' "${DIR}"/storage/vfs-containers/*/userdata/dump.log || true
  kc delete pod labapp-freeze --wait=true --timeout=120s
}

cmd_down() {
  [[ -d "${DIR}" ]] || return 0
  if [[ -S "${DIR}/crio.sock" ]]; then
    crictl rmp -fa >/dev/null 2>&1 || true
  fi
  local pid name m h
  if [[ -f "${DIR}/pids" ]]; then
    while read -r pid name; do
      if kill -TERM "${pid}" 2>/dev/null; then
        for _ in $(seq 1 20); do
          kill -0 "${pid}" 2>/dev/null || break
          sleep 0.5
        done
        kill -KILL "${pid}" 2>/dev/null || true
        log "stopped ${name} (PID ${pid})"
      fi
    done < <(tac "${DIR}/pids")
  fi
  # pinns' namespace bind mounts and CRI-O's shm mounts, deepest first.
  while read -r m; do umount -l "${m}" || true; done < <(awk -v d="${DIR}/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  ip link del lmreal0 2>/dev/null || true
  for h in /sys/fs/cgroup/*/lm-real-node; do
    [[ -d "${h}" ]] && find "${h}" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  rm -rf "${DIR}"
}

case "${1:-}" in
  build) cmd_build ;;
  crio) cmd_crio ;;
  sandbox) cmd_sandbox ;;
  kubelet) cmd_kubelet "${2:-}" ;;
  pod) cmd_pod "${2:-}" ;;
  freeze) cmd_freeze "${2:-}" ;;
  down) cmd_down ;;
  *) die "usage: hack/real-node.sh build|crio|sandbox|kubelet KUBECONFIG|pod KUBECONFIG|down (see the top of this file)" ;;
esac
