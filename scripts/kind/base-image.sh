#!/usr/bin/env bash
# The Debian bookworm base image (debootstrap --variant=minbase, docker import) every
# offline image starts from: tiergate/debian-base:bookworm. Cached; idempotent.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

build_base() {
  debootstrap_image "$BASE_IMAGE" "" --change 'CMD ["/bin/bash"]'
  "$REPO/scripts/kind/dockerd.sh" verify "$BASE_IMAGE"
}

timed base-image build_base
