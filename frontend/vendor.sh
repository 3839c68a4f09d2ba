#!/usr/bin/env bash
# Re-downloads the report's charting libraries (Vega, Vega-Lite, vega-embed, vega-interpreter)
# from the npm registry, pinned by version and checked by the sha256 of each package tarball,
# into frontend/static/frontend/vendor/. The files are committed: nothing is fetched at test or
# run time, and no page loads anything from a CDN.
#
# Usage: frontend/vendor.sh   (needs curl, tar and sha256sum; run from anywhere)
set -euo pipefail

REGISTRY=${NPM_REGISTRY:-https://registry.npmjs.org}
HERE=$(cd "$(dirname "$0")" && pwd)
DEST="$HERE/static/frontend/vendor"

# package  version  sha256 of the registry tarball  file in the package to keep  name it gets here
PACKAGES=(
  "vega 6.4.0 3521fb6ff68a94a40323954f0ba4484ba4014b157bfd37f89a3b063082320c42 build/vega.min.js vega.min.js"
  "vega-lite 6.5.0 811230a6bfd2cdbfc359d0c38f624a90df86657b7f251b67be88bcc4eee32b7f build/vega-lite.min.js vega-lite.min.js"
  "vega-embed 7.3.0 d9a958ced3240f0418df7d5e12e97dba6e63cecda15b8403e47a0db7eb6ea859 build/vega-embed.min.js vega-embed.min.js"
  "vega-interpreter 2.3.2 b83489633c1320e9d6f839781f0c84c661a5ca2666fe38cb83f7c52a531fffec build/vega-interpreter.js vega-interpreter.js"
)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$DEST"
for line in "${PACKAGES[@]}"; do
  read -r name version sha file target <<<"$line"
  tarball="$work/$name-$version.tgz"
  curl -sSfL -o "$tarball" "$REGISTRY/$name/-/$name-$version.tgz"
  echo "$sha  $tarball" | sha256sum --check --quiet - || { echo "$name $version: sha256 differs from the pinned one" >&2; exit 1; }
  mkdir -p "$work/$name"
  tar -xzf "$tarball" -C "$work/$name"
  # The source maps are not shipped; a dangling sourceMappingURL would fail collectstatic's manifest.
  sed '/^\/\/# sourceMappingURL=/d' "$work/$name/package/$file" > "$DEST/$target"
  cp "$work/$name/package/LICENSE" "$DEST/LICENSE.$name"
  echo "$name $version -> vendor/$target"
done
