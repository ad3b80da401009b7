#!/usr/bin/env bash
# Builds the statically linked meridian binary and the FROM-scratch image; prints the image's
# name as its last line.
#
#   deploy/container/build.sh                 # builds the static binary first
#   MERIDIAN_STATIC=path deploy/container/build.sh   # uses a static binary already built
#
# The static binary: RUSTFLAGS="-C target-feature=+crt-static" cargo build --release
# --target x86_64-unknown-linux-gnu -p meridian (what .ci/run builds).
set -euo pipefail
cd "$(dirname "$0")/../.."
target=x86_64-unknown-linux-gnu
bin=${MERIDIAN_STATIC:-}
if [ -z "$bin" ]; then
    RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --target "$target" -p meridian >&2
    bin="target/$target/release/meridian"
fi
# A dynamically linked binary lists the shared libraries it loads ("lib... => path").
if ldd "$bin" 2>&1 | grep -q "=>"; then
    echo "$bin is dynamically linked; a FROM scratch image needs the static build (see above)" >&2
    exit 1
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
# Without debug information: the image carries what runs.
strip -o "$ctx/meridian" "$bin"
echo "meridian:x:10001:10001:meridian:/data:/meridian" > "$ctx/passwd"
echo "meridian:x:10001:" > "$ctx/group"
mkdir "$ctx/data"
commit=$(git rev-parse --short HEAD 2>/dev/null || echo dev)
image="meridian:$commit"
docker build -q -t "$image" -t meridian:latest -f deploy/container/Dockerfile "$ctx" >&2
size=$(docker image inspect -f '{{.Size}}' "$image")
echo "image $image: $((size / 1024 / 1024)) MiB ($size bytes)" >&2
echo "$image"
