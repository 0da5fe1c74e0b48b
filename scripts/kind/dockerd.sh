#!/usr/bin/env bash
# Starts (or stops) a Docker engine for the kind steps. Idempotent.
#   scripts/kind/dockerd.sh start   # an engine already answering is reused as is
#   scripts/kind/dockerd.sh stop    # stops only the engine this script started
#   scripts/kind/dockerd.sh env     # prints `export DOCKER_HOST=...` for the shell
# Our engine keeps socket, data and exec roots under $TIERGATE_CACHE/kind/docker. Where
# runc cannot grant CAP_SYS_MODULE/CAP_SYS_RESOURCE (our VMs), the runc-dropcaps
# wrapper is the default runtime so `docker run --privileged` (kind nodes) works.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SOCK="$DOCKER_DIR/docker.sock"
PIDFILE="$DOCKER_DIR/dockerd.pid"

ensure_packages() {
  local missing=()
  if ! command -v dockerd >/dev/null && ! docker version >/dev/null 2>&1; then missing+=(docker.io); fi
  if [[ "$TIERGATE_OFFLINE" == 1 ]]; then
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v gcc >/dev/null || missing+=(gcc)
    [[ -f /usr/lib/x86_64-linux-gnu/libc.a ]] || missing+=(libc6-dev)
  fi
  if ((${#missing[@]})); then
    log "Installing Debian packages packages=${missing[*]}"
    [[ $(id -u) == 0 ]] || { log "Need root to apt-get install ${missing[*]}"; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# True when this VM cannot grant the two capabilities (missing from our bounding set),
# or when TIERGATE_DOCKER_DROPCAPS=1 says so.
needs_dropcaps() {
  case "${TIERGATE_DOCKER_DROPCAPS:-auto}" in
    1) return 0 ;; 0) return 1 ;;
  esac
  local bnd
  bnd=$((16#$(awk '/^CapBnd/ {print $2}' /proc/self/status)))
  (( (bnd >> 16 & 1) == 0 || (bnd >> 24 & 1) == 0 ))
}

our_engine_up() { [[ -S "$SOCK" ]] && DOCKER_HOST="unix://$SOCK" docker version >/dev/null 2>&1; }

start() {
  ensure_packages
  if our_engine_up; then
    log "Docker engine already running socket=$SOCK"
    return
  fi
  if [[ -z "${DOCKER_HOST:-}" ]] && command -v docker >/dev/null && docker version >/dev/null 2>&1; then
    log "Using the running Docker engine host=${DOCKER_HOST:-default}"
    return
  fi
  mkdir -p "$DOCKER_DIR/data" "$DOCKER_DIR/exec"
  local args=(
    --host "unix://$SOCK" --data-root "$DOCKER_DIR/data" --exec-root "$DOCKER_DIR/exec"
    --pidfile "$PIDFILE" --storage-driver overlay2
    --add-runtime "tiergate-runc=$REPO/scripts/kind/runc-dropcaps"
  )
  if needs_dropcaps; then
    args+=(--default-runtime tiergate-runc)
    log "Runtime wrapper is the default runtime wrapper=runc-dropcaps"
  fi
  rm -f "$SOCK" "$PIDFILE"
  log "Starting dockerd socket=$SOCK"
  setsid dockerd "${args[@]}" >"$DOCKER_DIR/dockerd.log" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    our_engine_up && break
    sleep 0.5
  done
  our_engine_up || { tail -20 "$DOCKER_DIR/dockerd.log" >&2; log "Dockerd did not come up"; exit 1; }
  log "Dockerd is up socket=$SOCK pid=$(cat "$PIDFILE")"
}

stop() {
  if [[ -f "$PIDFILE" ]]; then
    local pid
    pid=$(cat "$PIDFILE")
    if kill -0 "$pid" 2>/dev/null; then
      log "Stopping dockerd pid=$pid"
      kill "$pid"
      for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
    rm -f "$PIDFILE"
  fi
}

# verify IMAGE : a privileged container starts (what kind nodes need).
verify() {
  local image="${1:-$BASE_IMAGE}"
  docker run --rm --privileged "$image" true
  log "Privileged containers work image=$image"
}

case "${1:-start}" in
  start) timed dockerd-start start ;;
  stop) stop ;;
  verify) verify "${2:-}" ;;
  env) echo "export DOCKER_HOST=unix://$SOCK" ;;
  *) echo "usage: $0 start|stop|verify [IMAGE]|env" >&2; exit 2 ;;
esac
