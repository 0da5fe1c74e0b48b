#!/usr/bin/env bash
# The e2e suite on kind: the same as `make e2e-kind` (scripts/kind/e2e.sh; see scripts/kind/README.md).
# Offline (default) every image is built on this machine; TIERGATE_OFFLINE=0 on a machine with
# internet uses kind's stock node image and `docker build -f images/Dockerfile .`.
exec "$(dirname "${BASH_SOURCE[0]}")/kind/e2e.sh" "$@"
