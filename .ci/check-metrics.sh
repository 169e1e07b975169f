#!/usr/bin/env bash
# Checks what the agent and the aggregator export against Prometheus' own linter, and the
# shipped alert rules against Prometheus' rule checker:
#   - scrapes of a running agent and aggregator (saved by patchwatch/tests/it/metrics.rs)
#     through `promtool check metrics`;
#   - deploy/prometheus/alerts.yml through `promtool check rules`;
#   - deploy/grafana/patchwatch.json parses as JSON.
# Installs the Debian package `prometheus` (which ships promtool) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends prometheus >&2
fi

scrapes=$(mktemp -d)
trap 'rm -rf "$scrapes"' EXIT
PATCHWATCH_METRICS_SCRAPE_DIR=$scrapes \
  cargo test --locked -p patchwatch --test it -- metrics::agent_and_aggregator_metrics_follow_the_conventions
for who in agent aggregator; do
  test -s "$scrapes/$who.prom" || { echo "no $who scrape was saved" >&2; exit 1; }
  echo "promtool check metrics: $who"
  promtool check metrics < "$scrapes/$who.prom"
done

promtool check rules deploy/prometheus/alerts.yml
python3 -m json.tool deploy/grafana/patchwatch.json >/dev/null
echo "metrics, alert rules and dashboard OK"
