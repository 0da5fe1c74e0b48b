#!/usr/bin/env bash
# Creates the one-node kind cluster "tiergate" (idempotent) and writes its kubeconfig
# to .run/kind/kubeconfig; waits until the node is Ready and CoreDNS runs.
# TIERGATE_OFFLINE=1 (the default here): every image is built on this machine
# (scripts/kind/node-image.sh) and kindnetd is replaced by a ptp CNI config.
# TIERGATE_OFFLINE=0 (a machine with internet): kind's stock node image for its
# version (or $KIND_NODE_IMAGE, e.g. kindest/node:v1.35.x) and its default CNI.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

config() {
  local image disable etcd_patch=""
  if [[ "$TIERGATE_OFFLINE" == 1 ]]; then
    image="$NODE_IMAGE" disable=true
    etcd_patch="  - |
    kind: ClusterConfiguration
    etcd:
      local:
        imageTag: $ETCD_TAG"
  else
    image="${KIND_NODE_IMAGE:-}" disable=false
  fi
  sed -e "s|@CLUSTER@|$CLUSTER_NAME|" -e "s|@NODE_IMAGE@|$image|" -e "s|@DISABLE_CNI@|$disable|" \
    "$REPO/scripts/kind/cluster.yaml.tpl" | grep -v '^    image: *$' | awk -v patch="$etcd_patch" '{ if ($0 == "@ETCD_PATCH@") { if (patch != "") print patch } else print }'
}

# In offline mode CoreDNS answers cluster names only: no forwarding to any resolver.
coredns_local_only() {
  local corefile
  corefile=$(kubectl -n kube-system get configmap coredns -o jsonpath='{.data.Corefile}')
  if grep -q 'forward \.' <<<"$corefile"; then
    corefile=$(awk '
      skip { if ($0 ~ /^[[:space:]]*}[[:space:]]*$/) skip = 0; next }
      /^[[:space:]]*forward \./ { if ($0 ~ /{[[:space:]]*$/) skip = 1; next }
      { print }' <<<"$corefile")
    kubectl -n kube-system create configmap coredns --from-literal=Corefile="$corefile" --dry-run=client -o yaml | kubectl replace -f - >/dev/null
    kubectl -n kube-system rollout restart deployment coredns >/dev/null
  fi
}

up() {
  "$REPO/scripts/kind/dockerd.sh" start
  ensure_go_tools
  [[ "$TIERGATE_OFFLINE" == 1 ]] && "$REPO/scripts/kind/node-image.sh"
  mkdir -p "$RUN_DIR"
  config > "$RUN_DIR/cluster.yaml"
  if kind get clusters 2>/dev/null | grep -qx "$CLUSTER_NAME"; then
    log "Cluster already exists cluster=$CLUSTER_NAME"
    kind export kubeconfig --name "$CLUSTER_NAME" --kubeconfig "$KUBECONFIG_FILE" >/dev/null 2>&1
  else
    log "Creating cluster cluster=$CLUSTER_NAME"
    kind create cluster --config "$RUN_DIR/cluster.yaml" --kubeconfig "$KUBECONFIG_FILE" --wait 0s
  fi
  export KUBECONFIG="$KUBECONFIG_FILE"
  kubectl wait --for=condition=Ready node --all --timeout=180s >/dev/null
  [[ "$TIERGATE_OFFLINE" == 1 ]] && coredns_local_only
  kubectl -n kube-system rollout status deployment coredns --timeout=180s >/dev/null
  log "Cluster ready cluster=$CLUSTER_NAME kubeconfig=$KUBECONFIG_FILE"
}

timed kind-up up
