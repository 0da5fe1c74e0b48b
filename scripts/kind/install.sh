#!/usr/bin/env bash
# Loads the tiergate images into the kind cluster and installs charts/tiergate into
# $TIERGATE_E2E_NAMESPACE (default tiergate-system); waits for every pod to be Ready.
# Offline: the images come from scripts/kind/tiergate-image.sh's archive and nothing is
# pulled (pullPolicy Never). Online: the same image built from images/Dockerfile, and
# Prometheus from its upstream image.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NS="${TIERGATE_E2E_NAMESPACE:-tiergate-system}"

install() {
  export KUBECONFIG="$KUBECONFIG_FILE"
  "$REPO/scripts/kind/tiergate-image.sh"
  log "Loading images into the cluster archive=$IMAGES_DIR/tiergate-dev.tar"
  kind load image-archive "$IMAGES_DIR/tiergate-dev.tar" --name "$CLUSTER_NAME"
  # The SQLite store's hostPath directory, owned by the image's user, so that no pod needs
  # root (restricted Pod Security) to write it; the test fleets' workers mount it too.
  local node
  for node in $(kind get nodes --name "$CLUSTER_NAME"); do
    docker exec "$node" sh -c 'mkdir -p /var/lib/tiergate-store && chown 10001:10001 /var/lib/tiergate-store'
  done
  local extra=()
  if [[ "$TIERGATE_OFFLINE" == 1 ]]; then
    extra+=(--set image.pullPolicy=Never)
  else
    extra+=(--set prometheus.image.repository=prom/prometheus --set "prometheus.image.tag=${PROMETHEUS_UPSTREAM_TAG:-v2.53.2}")
  fi
  helm upgrade --install tiergate "$REPO/charts/tiergate" --namespace "$NS" --create-namespace \
    --values "$REPO/charts/tiergate/ci/kind-values.yaml" \
    --set "image.repository=${TIERGATE_IMAGE%:*}" --set "image.tag=${TIERGATE_IMAGE##*:}" \
    "${extra[@]}" --wait --timeout 5m
  # A new image under the same tag: make the pods pick it up.
  kubectl -n "$NS" rollout restart deployment >/dev/null
  kubectl -n "$NS" rollout status deployment --timeout=300s >/dev/null
  log "Chart installed namespace=$NS"
}

timed chart-install install
