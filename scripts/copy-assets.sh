#!/usr/bin/env bash
# Copy the npm-installed browser assets into the package's static folder (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
dest=src/textdesk/web/static/vendor
mkdir -p "$dest"
cp node_modules/htmx.org/dist/htmx.min.js "$dest/htmx.min.js"
cp node_modules/htmx-ext-sse/dist/sse.min.js "$dest/htmx-ext-sse.js"
cp node_modules/chart.js/dist/chart.umd.min.js "$dest/chart.umd.min.js"
