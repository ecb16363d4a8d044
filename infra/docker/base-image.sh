#!/usr/bin/env bash
# Build Cadenza's container base image from Debian packages, with no image registry:
# debootstrap a minimal Debian root file system with Python 3.11 into a folder, then
# `docker import` it. The Dockerfile takes it as `--build-arg BASE_IMAGE=<tag>` (its default
# is the official Python slim image, for machines that reach a registry).
#
# Cached twice: the rootfs tarball in $CADENZA_CACHE_DIR/base-image/<key>.tar (survives a
# purge of Docker's data) and the image itself, labelled with the key. The key hashes this
# script, the suite and the package list, so editing any of them rebuilds.
#
#   infra/docker/base-image.sh            # prints the image tag it built or found
#   CADENZA_BASE_FORCE=1 infra/docker/base-image.sh   # rebuild even if cached
#
# The host's extra CA certificates (/usr/local/share/ca-certificates, e.g. a TLS-inspecting
# egress proxy's) are installed in the image too, so `uv sync` in the build trusts what the
# host trusts; CADENZA_BASE_HOST_CAS=0 leaves them out.
#
# The Debian mirror is the one this host's apt uses (first `URIs:`/`deb` line), unless
# CADENZA_BASE_MIRROR is set. Needs root (debootstrap) and a running dockerd.
set -euo pipefail

SUITE="${CADENZA_BASE_SUITE:-bookworm}"        # bookworm's python3 is 3.11, as the lock needs
TAG="${CADENZA_BASE_IMAGE:-cadenza-base:${SUITE}-py311}"
CACHE="${CADENZA_CACHE_DIR:-$HOME/.cache/cadenza}/base-image"
# python3-venv: the venv uv creates; libgomp1: OpenMP runtime of onnxruntime and llama.cpp;
# ca-certificates: TLS to external services.
PACKAGES="python3,python3-venv,libpython3.11,ca-certificates,libgomp1,tzdata"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HOST_CAS="${CADENZA_BASE_HOST_CAS:-1}"
cas=()
if [[ "$HOST_CAS" == 1 ]]; then
    shopt -s nullglob
    cas=(/usr/local/share/ca-certificates/*.crt)
    shopt -u nullglob
fi
key="$( (cat "${BASH_SOURCE[0]}"; echo "$SUITE $PACKAGES"; cat "${cas[@]}" </dev/null) \
    | sha256sum | cut -c1-16)"
tarball="$CACHE/$SUITE-$key.tar"

log() { echo "base-image: $*" >&2; }

if [[ -z "${CADENZA_BASE_FORCE:-}" ]] \
    && [[ "$(docker image inspect -f '{{ index .Config.Labels "cadenza.base.key" }}' "$TAG" 2>/dev/null)" == "$key" ]]; then
    log "$TAG is current (key $key)"
    echo "$TAG"
    exit 0
fi

mirror="${CADENZA_BASE_MIRROR:-}"
if [[ -z "$mirror" ]]; then
    mirror="$(
        { grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}';
          grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}'; } \
        | grep -v -- '-security' | grep -E '/debian/?$' | head -n1 || true
    )"
fi

if [[ -n "${CADENZA_BASE_FORCE:-}" || ! -s "$tarball" ]]; then
    [[ -n "$mirror" ]] || { log "no Debian mirror found in /etc/apt; set CADENZA_BASE_MIRROR"; exit 1; }
    command -v debootstrap >/dev/null || { log "debootstrap missing: apt-get install debootstrap"; exit 1; }
    mkdir -p "$CACHE"
    root="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
    trap 'rm -rf "$root"' EXIT
    start=$SECONDS
    log "debootstrap $SUITE from $mirror into $root (a few minutes)"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$mirror" \
        > "$CACHE/debootstrap.log" 2>&1 \
        || { tail -n 30 "$CACHE/debootstrap.log" >&2; exit 1; }
    # Slim it: no apt lists, caches, docs or man pages in the image.
    chroot "$root" apt-get clean
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/var/log/*.log "$root"/tmp/* "$root"/root/.cache
    if ((${#cas[@]})); then
        cp "${cas[@]}" "$root/usr/local/share/ca-certificates/"
        chroot "$root" update-ca-certificates >/dev/null
        log "trusting the host's extra CAs: ${cas[*]##*/}"
    fi
    # `python` on PATH as in the official image, so the Dockerfile's commands are the same.
    ln -sf /usr/bin/python3 "$root/usr/local/bin/python"
    # The image's apt points at the same mirror as the host's, for derived images.
    echo "deb $mirror $SUITE main" > "$root/etc/apt/sources.list"
    tar -C "$root" --numeric-owner -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
    log "rootfs built in $((SECONDS - start)) s: $(du -h "$tarball" | cut -f1)"
fi

docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change "LABEL cadenza.base.key=$key cadenza.base.suite=$SUITE" \
    --change 'CMD ["python3"]' \
    "$tarball" "$TAG" >/dev/null
log "imported $TAG (key $key) from $tarball"
echo "$TAG"
