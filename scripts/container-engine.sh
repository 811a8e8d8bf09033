#!/usr/bin/env bash
# Makes a Docker engine and the Dockerfile's base image available for scripts/image-check.ts.
# Exit 0: both ready. Exit 2: this machine cannot provide them (the reason on stderr), which
# callers tell apart from a failure of the project. Builds a stand-in base only when the real
# one cannot be pulled, and says so.
set -uo pipefail
cd "$(dirname "$0")/.."

unavailable () { echo "container engine unavailable: $*" >&2; exit 2; }
# IMAGE_CHECK_INSTALL=0: use what the machine has, install and build nothing (a cold set-up takes minutes).
may_install () { [ "${IMAGE_CHECK_INSTALL:-1}" != 0 ] || unavailable "$1, and IMAGE_CHECK_INSTALL=0"; }
engine_up () { docker info >/dev/null 2>&1; }
is_root () { [ "$(id -u)" = 0 ]; }
apt_install () {
  is_root && command -v apt-get >/dev/null || return 1
  apt-get update -qq >/dev/null 2>&1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}

base=$(sed -nE 's/^FROM ([^ ]+).*/\1/p' Dockerfile | head -n 1)
[ -n "$base" ] || { echo "the Dockerfile names no base image" >&2; exit 1; }
stand_in_tag="mangopay-token-broker-stand-in:${base//[:\/]/-}"

# --- the engine -------------------------------------------------------------------------
if ! engine_up; then
  if ! command -v docker >/dev/null || ! command -v dockerd >/dev/null; then
    may_install "no Docker engine installed"
    apt_install docker.io || unavailable "no Docker engine, and docker.io could not be installed"
  fi
  is_root || unavailable "dockerd is not running, and only root can start it"
  log=${TMPDIR:-/tmp}/dockerd-image-check.log
  echo "starting dockerd in the background (log: $log)"
  nohup dockerd >"$log" 2>&1 &
  for _ in $(seq 1 60); do engine_up && break; sleep 1; done
  engine_up || unavailable "dockerd did not answer within 60 s (see $log)"
fi

# --- the base image ---------------------------------------------------------------------
if docker image inspect "$base" >/dev/null 2>&1; then
  if [ "$(docker image inspect -f '{{.Id}}' "$base")" = "$(docker image inspect -f '{{.Id}}' "$stand_in_tag" 2>/dev/null)" ]; then
    echo "base image $base: the stand-in built here earlier (Debian packages + the registry's node)"
  else
    echo "base image $base: present"
  fi
  exit 0
fi
may_install "no $base image here"
if timeout 120 docker pull -q "$base" >/dev/null 2>&1; then
  echo "base image $base: pulled"
  exit 0
fi

echo "base image $base cannot be pulled: building a stand-in under that tag from Debian's packages and the registry's node package"
# node:24-bookworm-slim → Node 24 on Debian bookworm.
if [[ "$base" =~ ^node:([0-9]+)-([a-z]+)(-slim)?$ ]]; then
  node_major=${BASH_REMATCH[1]}
  suite=${BASH_REMATCH[2]}
else
  unavailable "no stand-in recipe for $base"
fi
is_root || unavailable "building the stand-in needs root (debootstrap)"
command -v debootstrap >/dev/null || apt_install debootstrap || unavailable "debootstrap could not be installed"
# The Debian mirror apt already uses (deb822 or one-line sources).
mirror=$(sed -nE 's/^URIs:[[:space:]]+([^[:space:]]+).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v -- '-security' | head -n 1)
[ -n "$mirror" ] || mirror=$(sed -nE 's/^deb[[:space:]]+([^[:space:]]+)[[:space:]].*/\1/p' /etc/apt/sources.list 2>/dev/null | grep -v -- '-security' | head -n 1)
[ -n "$mirror" ] || unavailable "no Debian mirror found in apt's sources"
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca_bundle" ] || unavailable "no CA bundle at $ca_bundle"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs
debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -n 20 "$work/debootstrap.log" >&2; unavailable "debootstrap of $suite failed"; }
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

# Node: the registry's `node` package ships the binary.
npm install --prefix "$work/node" --no-save --no-audit --no-fund --loglevel=error "node@$node_major" >/dev/null ||
  unavailable "node@$node_major could not be installed from the registry"
install -D -m 0755 "$(readlink -f "$work/node/node_modules/node/bin/node")" "$rootfs/usr/local/bin/node"
# npm, as the official image carries it.
(cd "$work" && npm pack --silent --loglevel=error npm@11 >/dev/null) || unavailable "npm could not be packed from the registry"
mkdir -p "$rootfs/usr/local/lib/node_modules/npm"
tar -xzf "$work"/npm-*.tgz -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
chmod 0755 "$rootfs"/usr/local/lib/node_modules/npm/bin/np?-cli.js
# The `node` user of the official image.
echo 'node:x:1000:' >>"$rootfs/etc/group"
echo 'node:x:1000:1000::/home/node:/bin/sh' >>"$rootfs/etc/passwd"
install -d -o 1000 -g 1000 "$rootfs/home/node"
# The registry is reached through a TLS proxy this machine trusts: the image must trust it too.
install -D -m 0644 "$ca_bundle" "$rootfs/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$rootfs/usr/local/etc"
echo "cafile=/etc/ssl/certs/ca-certificates.crt" >"$rootfs/usr/local/etc/npmrc"

tar -C "$rootfs" -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt' \
  -c 'CMD ["node"]' - "$stand_in_tag" >/dev/null || exit 1
docker tag "$stand_in_tag" "$base" || exit 1
echo "base image $base: stand-in built ($(docker run --rm "$base" node -v), Debian $suite)"
