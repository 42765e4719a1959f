#!/usr/bin/env bash
# Re-cuts this sample from the full real data (default ../shared/data, relative to the project
# root): the last 30 days of every ASSET_5m.csv and the last 7 days of the crypto ASSET_1m.csv,
# counted back from each file's own last bar, header kept, rows unchanged.
#
#   data/sample/cut.sh [SOURCE_DIR]
set -euo pipefail
cd "$(dirname "$0")"
src="${1:-../../../shared/data}"
cut_last_days() { # FILE DAYS
  local f="$src/$1" last
  last=$(tail -n 1 "$f" | cut -d, -f1)
  awk -F, -v from=$((last - $2 * 86400)) 'NR == 1 || $1 > from' "$f" >"$1.tmp"
  mv "$1.tmp" "$1"
}
for f in "$src"/*_5m.csv; do cut_last_days "$(basename "$f")" 30; done
for a in BTC ETH SOL; do cut_last_days "${a}_1m.csv" 7; done
