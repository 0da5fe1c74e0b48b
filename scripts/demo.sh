#!/usr/bin/env bash
# The local demo: a real Kubernetes control plane on loopback (etcd, kube-apiserver,
# controller-manager, scheduler, kwok nodes whose pods run as real processes), the tiergate
# operator under its least-privilege account, Prometheus scraping the workers, a test SMSC,
# the sender API with steady traffic, and the example fleet of three tiers. It then ships a
# good release (it moves tier by tier) and a bad one (tier 0 halts and rolls back; the rest
# never see it). `scripts/demo.sh down` stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUN=${TIERGATE_DEMO_DIR:-$ROOT/.run/demo}
TG=$ROOT/.venv/bin/tiergate
PY=$ROOT/.venv/bin/python
export PATH="$ROOT/.venv/bin:$PATH"

say() { printf '\n\033[1;36m==> %s\033[0m\n' "$*"; }

stop_all() {
  for f in "$RUN"/pids/*.pid; do
    [ -e "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
  "$TG" dev down --workdir "$RUN/cluster" >/dev/null 2>&1 || true
}

if [ "${1:-}" = "down" ]; then
  stop_all
  echo "demo stopped"
  exit 0
fi

stop_all
rm -rf "$RUN"
mkdir -p "$RUN/pids" "$RUN/logs"

bg() {  # bg NAME CMD...: run in the background, log and pid under $RUN
  local name=$1; shift
  nohup "$@" >"$RUN/logs/$name.log" 2>&1 &
  echo $! >"$RUN/pids/$name.pid"
}

wait_http() {  # wait_http URL SECONDS
  local deadline=$(( $(date +%s) + $2 ))
  until curl -fsS -o /dev/null "$1" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "timed out waiting for $1" >&2; return 1; }
    sleep 0.3
  done
}

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
SMPP_PORT=$(free_port); SMSC_STATS=$(free_port); SD_PORT=$(free_port); PROM_PORT=$(free_port)
API_PORT=$(free_port); OP_METRICS=$(free_port)
printf 'SMPP_PORT=%s SMSC_STATS=%s SD_PORT=%s PROM_PORT=%s API_PORT=%s OP_METRICS=%s\n' \
  "$SMPP_PORT" "$SMSC_STATS" "$SD_PORT" "$PROM_PORT" "$API_PORT" "$OP_METRICS" >"$RUN/ports"

say "Starting the local control plane"
"$TG" dev up --workdir "$RUN/cluster" --nodes 3
export KUBECONFIG=$RUN/cluster/kubeconfig
eval "$("$TG" dev env --workdir "$RUN/cluster")"
KUBECTL=$(command -v kubectl)

say "Installing the SenderTier CRD and the operator's RBAC"
$KUBECTL apply --server-side -f crds/sendertier.yaml
$KUBECTL wait --for=condition=Established crd/sendertiers.tiergate.io --timeout=60s
$KUBECTL apply --server-side -f deploy/operator/rbac.yaml
TOKEN=$($KUBECTL -n tiergate-system create token tiergate-operator --duration=24h)
$KUBECTL config view --raw --minify >"$RUN/operator.kubeconfig"
KUBECONFIG=$RUN/operator.kubeconfig $KUBECTL config set-credentials tiergate-operator --token="$TOKEN" >/dev/null
KUBECONFIG=$RUN/operator.kubeconfig $KUBECTL config set-context --current --user=tiergate-operator >/dev/null

say "Starting the test SMSC, Prometheus and the sender API"
bg smsc "$TG" smsc --host 127.0.0.1 --port "$SMPP_PORT" --stats-port "$SMSC_STATS" --receipts
bg podsd "$TG" monitoring pod-sd --host 127.0.0.1 --port "$SD_PORT"
"$TG" monitoring prometheus-config --sd-url "http://127.0.0.1:$SD_PORT/targets" >"$RUN/prometheus.yml"
bg prometheus prometheus --config.file="$RUN/prometheus.yml" --storage.tsdb.path="$RUN/prometheus" \
  --web.listen-address="127.0.0.1:$PROM_PORT"
STORE="sqlite://$RUN/tiergate.db"
echo "demo-token=demo-customer" >"$RUN/tokens"
TIERGATE_TRAFFIC_CLASSES=bulk,standard,priority bg api "$TG" sender api --store "$STORE" --host 127.0.0.1 --port "$API_PORT" --tokens-file "$RUN/tokens"
wait_http "http://127.0.0.1:$SMSC_STATS/stats" 30
wait_http "http://127.0.0.1:$PROM_PORT/-/ready" 60
wait_http "http://127.0.0.1:$API_PORT/healthz" 30

say "Starting the operator (as its own service account)"
KUBECONFIG=$RUN/operator.kubeconfig POD_NAMESPACE=tiergate-system \
  bg operator "$TG" operator run --prometheus-url "http://127.0.0.1:$PROM_PORT" --metrics-port "$OP_METRICS" --metrics-host 127.0.0.1

say "Sending steady traffic (20 msg/s per class) through the sender API"
bg load "$TG" dev load --url "http://127.0.0.1:$API_PORT" --token demo-token --rate 60 \
  --classes bulk,standard,priority

say "Applying the example fleet: bulk (order 0), standard (1), priority (2)"
$KUBECTL create configmap tiergate-sender --from-literal=TIERGATE_STORE_URL="$STORE" \
  --from-literal=TIERGATE_UPSTREAM_URL="smpp://127.0.0.1:$SMPP_PORT" --dry-run=client -o yaml | $KUBECTL apply -f -
$KUBECTL create secret generic tiergate-smpp --from-literal=system-id=tiergate --from-literal=password=secret12 \
  --dry-run=client -o yaml | $KUBECTL apply -f -
$KUBECTL apply -f examples/fleet/sendertiers.yaml

wait_phase() {  # wait_phase TIER PHASE SECONDS
  local deadline=$(( $(date +%s) + $3 ))
  until [ "$($KUBECTL get st "$1" -o jsonpath='{.status.phase}')" = "$2" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "timed out waiting for $1 to be $2" >&2; return 1; }
    sleep 1
  done
}
for t in bulk standard priority; do wait_phase "$t" SignedOff 300; done
$KUBECTL get st

say "A good release to every tier at once (as GitOps would): it moves one tier at a time"
for t in bulk standard priority; do
  $KUBECTL patch st "$t" --type=json -p '[{"op":"add","path":"/spec/template/spec/containers/0/env/-","value":{"name":"RELEASE","value":"2"}}]'
done
"$TG" status sms-senders
for t in bulk standard priority; do wait_phase "$t" SignedOff 300; "$TG" status sms-senders; done

say "A bad release (the 2020 incident: workers start but never bring up sending)"
for t in bulk standard priority; do
  $KUBECTL patch st "$t" --type=json -p '[{"op":"add","path":"/spec/template/spec/containers/0/env/-","value":{"name":"TIERGATE_FAULTS","value":"no-bind"}},{"op":"add","path":"/spec/template/spec/containers/0/env/-","value":{"name":"TIERGATE_ALLOW_FAULTS","value":"1"}}]'
done
wait_phase bulk RolledBack 300
sleep 2
$KUBECTL get st
"$TG" status sms-senders
$KUBECTL get events --field-selector involvedObject.kind=SenderTier --sort-by=.lastTimestamp | tail -12

cat <<EOT

The demo keeps running. Try:
  export KUBECONFIG=$KUBECONFIG PATH=$ROOT/.venv/bin:\$PATH
  kubectl get st                      # phases and revisions
  tiergate status --watch             # the fleet, live
  tiergate retry bulk                 # try the bad release again (it halts again)
  curl -s localhost:$SMSC_STATS/stats   # what the SMSC received
  open http://127.0.0.1:$PROM_PORT         # Prometheus (ports are in $RUN/ports)
Stop everything with: make demo-down
EOT
