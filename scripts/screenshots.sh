#!/usr/bin/env bash
# Regenerates screenshots/*.png from a real scenario: the test drives tcpvet
# in tmux and saves each screen as ANSI text; aha turns it into HTML and
# headless Chromium photographs it. Needs root, tmux, aha and chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in tmux aha chromium; do
  command -v "$tool" >/dev/null || { echo "screenshots: needs $tool (apt-get install tmux aha chromium fonts-dejavu-core)" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
TCPVET_SCREENSHOTS="$work" go test -count=1 -run '^TestScreenshots$' .
mkdir -p screenshots
for ans in "$work"/*.ans; do
  name=$(basename "$ans" .ans)
  {
    printf '<!doctype html><meta charset="utf-8"><style>'
    printf 'body{background:#16161e;margin:0;padding:14px}'
    printf 'pre{font:15px/1.25 "DejaVu Sans Mono",monospace;color:#d8d8e0;margin:0}</style><pre>'
    aha --no-header <"$ans"
    printf '</pre>'
  } >"$work/$name.html"
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$work/chrome" --hide-scrollbars \
    --window-size=1300,720 --screenshot="$PWD/screenshots/$name.png" "file://$work/$name.html" 2>/dev/null
  echo "screenshots/$name.png"
done
