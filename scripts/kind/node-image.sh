#!/usr/bin/env bash
# The kind node image tiergate/kind-node:$KUBERNETES_VERSION, assembled offline:
# `docker build` of images/kind-node on the debootstrapped rootfs (see its Dockerfile),
# then the control plane image archive imported into the node's containerd (content
# only, --no-unpack, as `kind build node-image` does) and committed.
# Why not `kind build node-image`: it always fetches kindnetd, local-path-provisioner
# and its base image from registries, none of which we can reach.
# Rebuilt only when an input changed. Idempotent.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEF="$REPO/images/kind-node"
ARCHIVE="$IMAGES_DIR/k8s-components-$KUBERNETES_VERSION.tar"

kind_module_dir() {
  (cd /tmp && go mod download -json "sigs.k8s.io/kind@$KIND_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
}

stage() {
  local ctx="$1" files
  files="$(kind_module_dir)/images/base/files"
  mkdir -p "$ctx/kind-files/usr/local/bin" "$ctx/kind-files/etc/systemd/system/kubelet.service.d" \
    "$ctx/kind-files/etc/default" "$ctx/kind-files/etc/sysctl.d" "$ctx/bin"
  cp "$files/usr/local/bin/entrypoint" "$ctx/kind-files/usr/local/bin/"
  cp -r "$files/kind" "$ctx/kind-files/kind"
  cp "$files/etc/systemd/system/kubelet.service" "$files/etc/systemd/system/kubelet.slice" \
    "$files/etc/systemd/system/undo-mount-hacks.service" "$ctx/kind-files/etc/systemd/system/"
  cp "$files"/etc/systemd/system/kubelet.service.d/* "$ctx/kind-files/etc/systemd/system/kubelet.service.d/"
  cp "$files/etc/default/kubelet" "$ctx/kind-files/etc/default/"
  cp "$files/etc/crictl.yaml" "$ctx/kind-files/etc/"
  cp "$files"/etc/sysctl.d/* "$ctx/kind-files/etc/sysctl.d/"
  echo "$KUBERNETES_VERSION" > "$ctx/kind-files/kind/version"
  cp "$DEF/containerd-config.toml" "$DEF/10-tiergate-ptp.conflist" "$DEF/Dockerfile" "$ctx/"
  for b in kubelet kubeadm kubectl crictl; do cp "$K8S_BIN/$b" "$ctx/bin/"; done
}

build_node() {
  "$REPO/scripts/kind/component-images.sh"
  "$REPO/scripts/kind/rootfs.sh" node
  local key
  key=$(stamp_key "$DEF/Dockerfile" "$DEF/containerd-config.toml" "$DEF/10-tiergate-ptp.conflist" \
    "$KIND_VERSION" "$STAMPS/components" "$(docker image inspect -f '{{.Id}}' "$NODE_ROOTFS_IMAGE")" \
    "$K8S_BIN/.kubelet.stamp" "$K8S_BIN/.kubeadm.stamp" "$K8S_BIN/.kubectl.stamp" "$K8S_BIN/.crictl.stamp")
  if image_exists "$NODE_IMAGE" && stamp_ok node-image "$key"; then
    up_to_date "Node image up to date image=$NODE_IMAGE"
    return
  fi
  local ctx="$KIND_CACHE/build/node"
  rm -rf "$ctx"; mkdir -p "$ctx"
  stage "$ctx"
  log "Building node image image=$NODE_IMAGE"
  docker build -q --network none --build-arg "BASE=$NODE_ROOTFS_IMAGE" -t "$NODE_IMAGE.build" "$ctx" >/dev/null
  rm -rf "$ctx"
  cid="tiergate-node-build-$$"
  trap 'docker rm -f "$cid" >/dev/null 2>&1 || true' EXIT
  docker run -d --name "$cid" --network none --entrypoint sleep --security-opt seccomp=unconfined \
    "$NODE_IMAGE.build" infinity >/dev/null
  docker exec "$cid" bash -c 'nohup containerd >/dev/null 2>&1 &'
  for _ in $(seq 1 30); do docker exec "$cid" ctr version >/dev/null 2>&1 && break; sleep 0.5; done
  log "Importing component images into the node archive=$ARCHIVE"
  docker exec -i "$cid" ctr --namespace=k8s.io images import --all-platforms --no-unpack --digests - < "$ARCHIVE" >/dev/null
  docker exec "$cid" ctr --namespace=k8s.io images list -q | grep -v -e '^sha256:' -e '^import-' >&2
  docker exec "$cid" pkill containerd || true
  sleep 1
  docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' \
    "$cid" "$NODE_IMAGE" >/dev/null
  docker rm -f "$cid" >/dev/null
  docker rmi "$NODE_IMAGE.build" >/dev/null
  stamp_set node-image "$key"
  prune_dangling
  log "Built node image image=$NODE_IMAGE size_mb=$(( $(docker image inspect -f '{{.Size}}' "$NODE_IMAGE") / 1048576 ))"
}

timed node-image build_node
