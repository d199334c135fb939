#!/usr/bin/env bash
# Re-fetch one vendored package from the npm registry: refresh.sh PKG VERSION
# Copies the files VENDOR.md lists for PKG out of `npm pack PKG@VERSION` and prints their sha256 and
# the tarball's integrity, for the tables in VENDOR.md.
set -euo pipefail
pkg="$1" version="$2"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$pkg@$version" >/dev/null && mkdir x && tar xzf ./*.tgz -C x)
echo "integrity: $(npm view "$pkg@$version" dist.integrity)"
grep -E "^\| $pkg/" "$here/VENDOR.md" | while IFS='|' read -r _ file source _; do
  file="$(echo "$file" | xargs)" source="$(echo "$source" | xargs)"
  cp "$work/x/package/$source" "$here/$file"
  sha256sum "$here/$file" | sed "s|$here/||"
done
