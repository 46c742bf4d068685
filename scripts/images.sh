#!/usr/bin/env bash
# `make images`: build the trainer (CPU variant) and operator images with buildah, here,
# without a Docker engine and without pulling from a registry.
#
# The base is a Debian bookworm root filesystem made by mmdebstrap and imported as a local
# image (built once: skipped while it exists); both Dockerfiles receive it as BASE_IMAGE, so
# their defaults (CUDA for the trainer, python:slim for the operator) stay what users build.
# pip inside the build uses this machine's pip settings (index, mirrors, find-links, CA
# bundle) through read-only build-time mounts: never copied into a layer. Layers and pip's
# wheel cache are kept by buildah, so a rebuild after a source change takes seconds to a minute.
#
# Each image's build records the layer images it used (`--> <id>` lines, cache hits too); the
# next build of that image removes the ones it no longer uses and no other recorded build
# does: a source change otherwise leaves ~5 GB of dangling trainer layers per rebuild. Only
# images these builds made are ever removed (never another project's dangling images).
#
# Images and buildah's storage live outside the repository (/var/lib/containers). Needs root
# (CI runs as root) or sudo for apt. Environment:
#   KUBETUNE_BASE_IMAGE / KUBETUNE_TRAINER_IMAGE / KUBETUNE_OPERATOR_IMAGE  image names
#   KUBETUNE_DEBIAN_MIRROR  the Debian mirror mmdebstrap uses (default deb.debian.org)
#   KUBETUNE_IMAGES         which to build: "operator trainer" (default)
#   KUBETUNE_BUILD_RECORDS  where each image's layer record is kept
#                           (default ~/.cache/kubetune/image-layers)
set -euo pipefail
cd "$(dirname "$0")/.."
# chroot isolation: RUN steps need no user namespaces or cgroups (buildah 1.28 ignores
# STORAGE_DRIVER; its default overlay storage works here as root).
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}

bash scripts/system-deps.sh # buildah, mmdebstrap, crun, fuse-overlayfs (apt-packages.txt)

VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
BASE=${KUBETUNE_BASE_IMAGE:-localhost/kubetune-base:bookworm}
TRAINER=${KUBETUNE_TRAINER_IMAGE:-localhost/kubetune/trainer:$VERSION-cpu}
OPERATOR=${KUBETUNE_OPERATOR_IMAGE:-localhost/kubetune/operator:$VERSION}
MIRROR=${KUBETUNE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
WHICH=${KUBETUNE_IMAGES:-operator trainer}
HOST_PREFIX=/tmp/kubetune-build-host # where the host's pip files appear during the build
RECORDS=${KUBETUNE_BUILD_RECORDS:-${XDG_CACHE_HOME:-$HOME/.cache}/kubetune/image-layers}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
elapsed() { echo $(($(date +%s) - $1)); }

# 1) The base: Debian bookworm (Python 3.11, as this machine's torch wheel needs) + venv.
if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  echo "==> base image $BASE (mmdebstrap bookworm from $MIRROR)"
  t=$(date +%s)
  nice -n 10 mmdebstrap --quiet --variant=minbase \
    --include=python3,python3-venv,ca-certificates,passwd bookworm "$work/rootfs.tar" "$MIRROR"
  ctr=$(buildah from scratch)
  tar -C "$(buildah mount "$ctr")" -xf "$work/rootfs.tar"
  buildah umount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd bash "$ctr"
  buildah commit --quiet --rm "$ctr" "$BASE" >/dev/null
  rm -f "$work/rootfs.tar"
  echo "==> base image built in $(elapsed "$t") s"
fi

# 2) The host's pip settings as read-only mounts (see scripts/pip-build-config.py).
volumes=()
while read -r vol; do volumes+=(--volume "$vol"); done \
  < <(python3 scripts/pip-build-config.py "$work/pip" "$HOST_PREFIX")

build() { # image dockerfile [buildah bud args...]
  local image=$1 file=$2 t
  shift 2
  echo "==> $image ($file)"
  t=$(date +%s)
  # docker format: OCI image configs cannot carry SHELL (the Dockerfiles use bash -o pipefail).
  nice -n 10 buildah bud --pull=never --layers --format docker \
    --build-arg BASE_IMAGE="$BASE" --build-arg PIP_CONFIG_FILE="$HOST_PREFIX/pip.conf" \
    "${volumes[@]}" "$@" -f "$file" -t "$image" . >"$work/build.log" ||
    { tail -n 40 "$work/build.log" >&2; return 1; }
  # Every step's image, new or from the cache, by its short id (11 hex digits).
  sed -nE 's/^--> (Using cache )?([0-9a-f]{11})[0-9a-f]*$/\2/p' "$work/build.log" | LC_ALL=C sort -u \
    >"$work/layers.${image//[^A-Za-z0-9._-]/_}"
  echo "==> $image built in $(elapsed "$t") s"
}

prune_old_layers() { # after every build succeeded: what earlier builds used and none uses now
  mkdir -p "$RECORDS"
  local now name others gone id n=0
  for now in "$work"/layers.*; do
    [ -e "$now" ] || continue
    name=${now##*/layers.}
    if [ -f "$RECORDS/$name" ]; then
      # In use: this run's builds, and the last recorded build of every other image.
      others=$(find "$RECORDS" -type f ! -name "$name")
      # shellcheck disable=SC2086 # $others: file names without spaces (sanitized above)
      gone=$(LC_ALL=C comm -23 "$RECORDS/$name" <(cat "$work"/layers.* $others | LC_ALL=C sort -u))
      for id in $gone; do
        buildah rmi "$id" >/dev/null 2>&1 && n=$((n + 1))
      done
    fi
    cp "$now" "$RECORDS/$name"
  done
  [ "$n" -eq 0 ] || echo "==> removed $n layer image(s) that earlier builds used and these do not"
}

for what in $WHICH; do
  case $what in
    operator) build "$OPERATOR" Dockerfile.operator ;;
    # The CPU variant: torch's CPU wheel from pip's configuration (TORCH_INDEX empty), CPU
    # Adam as the only prebuilt DeepSpeed op (no nvcc on a CPU base).
    trainer) build "$TRAINER" Dockerfile.trainer --build-arg BUILD_IMAGE="$BASE" \
      --build-arg TORCH_VARIANT=cpu --build-arg TORCH_INDEX= \
      --build-arg DEEPSPEED_OPS="DS_ACCELERATOR=cpu DS_BUILD_CPU_ADAM=1" ;;
    *) echo "unknown image '$what' in KUBETUNE_IMAGES (operator, trainer)" >&2; exit 2 ;;
  esac
done
prune_old_layers
buildah images | grep -E "^(REPOSITORY|localhost/kubetune)"
