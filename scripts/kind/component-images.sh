#!/usr/bin/env bash
# The control plane component images kubeadm expects (kube-apiserver,
# kube-controller-manager, kube-scheduler, kube-proxy, etcd, CoreDNS, pause), made from
# binaries built from the Go module proxy (build.py --group kind) on the component base,
# tagged as kubeadm $KUBERNETES_VERSION names them (etcd as $ETCD_TAG, set by the kind
# config), and saved into one archive (shared layers once):
#   $TIERGATE_CACHE/kind/images/k8s-components-$KUBERNETES_VERSION.tar
# Rebuilt only when a binary, a Dockerfile or the base image changed. Idempotent.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ARCHIVE="$IMAGES_DIR/k8s-components-$KUBERNETES_VERSION.tar"
DEF="$REPO/images/k8s-component"

component_tags() {
  local r=registry.k8s.io
  echo "kube-apiserver $r/kube-apiserver:$KUBERNETES_VERSION"
  echo "kube-controller-manager $r/kube-controller-manager:$KUBERNETES_VERSION"
  echo "kube-scheduler $r/kube-scheduler:$KUBERNETES_VERSION"
  echo "kube-proxy $r/kube-proxy:$KUBERNETES_VERSION"
  echo "etcd $r/etcd:$ETCD_TAG"
  echo "coredns $r/coredns/coredns:$COREDNS_VERSION"
}

all_tags() { component_tags | cut -d' ' -f2; echo "registry.k8s.io/pause:$PAUSE_VERSION"; }

build_pause() {
  local src out="$KIND_CACHE/build/pause"
  src="$(cd /tmp && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')/build/pause/linux/pause.c"
  mkdir -p "$out"
  gcc -Os -Wall -static -DVERSION="v$PAUSE_VERSION-tiergate" -o "$out/pause" "$src"
  docker build -q --network none -f "$DEF/Dockerfile.pause" -t "registry.k8s.io/pause:$PAUSE_VERSION" "$out" >/dev/null
}

build_one() {
  local name="$1" tag="$2" ctx="$KIND_CACHE/build/component-$1"
  rm -rf "$ctx"; mkdir -p "$ctx/bin"
  if [[ "$name" == kube-proxy ]]; then
    cp "$K8S_BIN/kube-proxy" "$ctx/bin/kube-proxy.bin"
    install -m 0755 "$DEF/iptables-select" "$ctx/bin/kube-proxy"
  else
    cp "$K8S_BIN/$name" "$ctx/bin/$name"
  fi
  ln -s "$name" "$ctx/bin/entrypoint"
  docker build -q --network none -f "$DEF/Dockerfile" --build-arg "BASE=$COMPONENT_BASE_IMAGE" \
    -t "$tag" "$ctx" >/dev/null
  rm -rf "$ctx"
}

check_kubeadm_tags() {
  local want have
  want=$("$K8S_BIN/kubeadm" config images list --kubernetes-version "$KUBERNETES_VERSION" 2>/dev/null | grep -v etcd | sort)
  have=$(all_tags | grep -v etcd | sort)
  if [[ "$want" != "$have" ]]; then
    log "Image tags differ from kubeadm's list want=$(echo $want) have=$(echo $have)"
    exit 1
  fi
}

build_all() {
  ensure_go_tools
  check_kubeadm_tags
  "$REPO/scripts/kind/rootfs.sh" component
  local name tag key inputs=("$DEF/Dockerfile" "$DEF/Dockerfile.pause" "$DEF/iptables-select" "$PAUSE_VERSION")
  inputs+=("$(docker image inspect -f '{{.Id}}' "$COMPONENT_BASE_IMAGE")")
  for b in kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd coredns; do
    inputs+=("$K8S_BIN/.$b.stamp")
  done
  key=$(stamp_key "${inputs[@]}")
  if [[ -f "$ARCHIVE" ]] && stamp_ok components "$key"; then
    up_to_date "Component images up to date archive=$ARCHIVE"
    return
  fi
  build_pause
  while read -r name tag; do
    log "Building component image image=$tag"
    build_one "$name" "$tag"
  done < <(component_tags)
  mapfile -t tags < <(all_tags)
  docker save -o "$ARCHIVE.tmp" "${tags[@]}"
  mv "$ARCHIVE.tmp" "$ARCHIVE"
  stamp_set components "$key"
  prune_dangling
  log "Saved component images archive=$ARCHIVE size_mb=$(( $(stat -c %s "$ARCHIVE") / 1048576 ))"
}

timed component-images build_all
