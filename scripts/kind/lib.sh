# Shared settings of the scripts/kind/ steps (sourced, not run).
# Everything built lives under $TIERGATE_CACHE/kind (never in the repo); every step
# appends its wall time and disk use to $KIND_CACHE/timings.log.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TIERGATE_CACHE="${TIERGATE_CACHE:-$HOME/.cache/tiergate}"
KIND_CACHE="$TIERGATE_CACHE/kind"
DOCKER_DIR="$KIND_CACHE/docker"
STAMPS="$KIND_CACHE/stamps"
IMAGES_DIR="$KIND_CACHE/images"
TIERGATE_OFFLINE="${TIERGATE_OFFLINE:-1}"
CLUSTER_NAME="${TIERGATE_KIND_CLUSTER:-tiergate}"
RUN_DIR="$REPO/.run/kind"
KUBECONFIG_FILE="${TIERGATE_KIND_KUBECONFIG:-$RUN_DIR/kubeconfig}"
mkdir -p "$KIND_CACHE" "$STAMPS" "$IMAGES_DIR"

# shellcheck disable=SC1091
source "$REPO/operator/tiergate_kits/devcluster/versions.env"
K8S_BIN="$TIERGATE_CACHE/k8s/$KUBERNETES_VERSION/bin"
PAUSE_VERSION="${PAUSE_VERSION:-3.10.1}"
ETCD_TAG="${ETCD_VERSION#v}-0"
BASE_IMAGE="tiergate/debian-base:bookworm"
KIND_BASE_IMAGE="tiergate/kind-base:bookworm"
NODE_IMAGE="tiergate/kind-node:$KUBERNETES_VERSION"
TIERGATE_IMAGE="${TIERGATE_IMAGE:-tiergate:dev}"
PROMETHEUS_IMAGE="tiergate/prometheus:dev"

# Our dockerd (running, or about to be started by dockerd.sh) unless another engine
# already answers on the default socket or DOCKER_HOST names one.
if [[ -z "${DOCKER_HOST:-}" ]] && { [[ -S "$DOCKER_DIR/docker.sock" ]] || [[ ! -S /var/run/docker.sock ]]; }; then
  export DOCKER_HOST="unix://$DOCKER_DIR/docker.sock"
fi
export PATH="$K8S_BIN:$PATH"

log() { printf '[kind] %s\n' "$*" >&2; }

# stamp_key FILES... : a hash of the given inputs (file contents, or literal strings); not of
# the files' paths, so a cache copied elsewhere or used from another checkout stays valid.
stamp_key() {
  local item
  for item in "$@"; do
    if [[ -f "$item" ]]; then sha256sum < "$item"; else printf '%s\n' "$item"; fi
  done | sha256sum | cut -c1-16
}

# stamp_ok NAME KEY : true when step NAME was already done with inputs KEY.
stamp_ok() { [[ -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }
stamp_set() { printf '%s' "$2" > "$STAMPS/$1"; }

# up_to_date MESSAGE... : say so, and mark the running timed step as having built nothing
# (its line in timings.log gets built=0, so the cold estimate does not take it for a build).
STEP_BUILT=1
up_to_date() { log "$@"; STEP_BUILT=0; }

# timed NAME CMD... : run CMD (in this shell), record seconds, whether it built anything
# and cache disk use. A step timed inside another one is part of the outer step's seconds.
timed() {
  local _step="$1"; shift
  local start end
  local STEP_BUILT=1  # dynamic scope: up_to_date in CMD marks this step, not an outer one
  start=$(date +%s)
  "$@"
  end=$(date +%s)
  local disk
  disk=$(du -sm "$KIND_CACHE" --exclude=docker 2>/dev/null | cut -f1)
  local ddisk
  ddisk=$(du -sm "$DOCKER_DIR/data" 2>/dev/null | cut -f1 || echo 0)
  printf '%s step=%s seconds=%s built=%s cache_mb=%s docker_data_mb=%s\n' \
    "$(date -u +%FT%TZ)" "$_step" "$((end - start))" "$STEP_BUILT" "${disk:-0}" "${ddisk:-0}" | tee -a "$KIND_CACHE/timings.log" >&2
}

# The Go binaries the kind steps need (the control plane and the kind group), built from the
# Go module proxy when missing; each group is a timed step of its own.
go_group_missing() {
  (cd "$REPO" && PYTHONPATH=operator python3 -c 'import sys; from tiergate_kits.devcluster import build; print(" ".join(build.missing_binaries(group=sys.argv[1])))' "$1")
}
build_go_group() {
  local missing
  missing=$(go_group_missing "$1")
  if [[ -z "$missing" ]]; then STEP_BUILT=0; return; fi
  log "Building Go binaries group=$1 missing=$missing"
  "$REPO/scripts/build-k8s.sh" --group "$1" >/dev/null
}
ensure_go_tools() {
  timed control-plane build_go_group core
  timed kind-tools build_go_group kind
}

# A hash of the working tree's inputs of the tiergate image (the start of its stamp's key).
tiergate_source_key() {
  (cd "$REPO" && find operator/tiergate operator/tiergate_kits/smsc.py operator/tiergate_kits/smsc_cli.py kits crds -type f \( -name '*.py' -o -name '*.yaml' -o -name '*.env' -o -name '*.typed' -o -name '*.toml' \) -print0 \
    | sort -z | xargs -0 sha256sum; sha256sum pyproject.toml constraints.txt images/tiergate/Dockerfile.offline images/Dockerfile) \
    | sha256sum | cut -c1-16
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# Drop the untagged leftovers of rebuilt images, only in the engine dockerd.sh started.
prune_dangling() {
  if [[ "${DOCKER_HOST:-}" == "unix://$DOCKER_DIR/docker.sock" ]]; then
    docker image prune -f >/dev/null
  fi
}

DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

# debootstrap_image TAG INCLUDES [--change ...] : a Debian minbase root file system
# with INCLUDES (comma-separated Debian packages, fetched by the host), docker-imported
# as TAG. Skipped when TAG exists and was built from the same inputs.
debootstrap_image() {
  local tag="$1" includes="$2"; shift 2
  local name key root
  name="rootfs-$(echo "$tag" | tr '/:' '__')"
  key=$(stamp_key "$DEBIAN_SUITE" "$DEBIAN_MIRROR" "$includes" "$*")
  if image_exists "$tag" && stamp_ok "$name" "$key"; then
    up_to_date "Image up to date image=$tag"
    return
  fi
  command -v debootstrap >/dev/null || { log "Debootstrap is missing; run scripts/kind/dockerd.sh start"; exit 1; }
  root="$KIND_CACHE/rootfs/$name"
  rm -rf "$root"
  mkdir -p "$root" "$KIND_CACHE/debs"
  log "Debootstrapping image=$tag packages=${includes:-none}"
  debootstrap --variant=minbase --cache-dir="$KIND_CACHE/debs" \
    ${includes:+--include="$includes"} "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR" \
    >"$KIND_CACHE/rootfs/$name.log" 2>&1 || { tail -20 "$KIND_CACHE/rootfs/$name.log" >&2; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" --numeric-owner -c . | docker import "$@" - "$tag" >/dev/null
  rm -rf "$root"
  stamp_set "$name" "$key"
  log "Imported image=$tag size_mb=$(( $(docker image inspect -f '{{.Size}}' "$tag") / 1048576 ))"
}

# The Debian root file systems every offline image starts from (packages fetched by
# the host with debootstrap; nothing is installed from inside a container).
NODE_ROOTFS_IMAGE="tiergate/kind-rootfs:bookworm"
NODE_PACKAGES="systemd,systemd-sysv,dbus,containerd,runc,containernetworking-plugins,iptables,nftables,conntrack,ethtool,socat,iproute2,kmod,util-linux,mount,procps,ca-certificates,libseccomp2,e2fsprogs,jq,pigz,libcap2-bin"
COMPONENT_BASE_IMAGE="tiergate/k8s-component-base:bookworm"
COMPONENT_PACKAGES="iptables,conntrack,kmod,ca-certificates"
PYTHON_BASE_IMAGE="tiergate/python-base:bookworm"
PYTHON_PACKAGES="python3,python3-venv,ca-certificates,tini"
PROMETHEUS_BASE_IMAGE="tiergate/prometheus-base:bookworm"
PROMETHEUS_PACKAGES="prometheus,ca-certificates"
