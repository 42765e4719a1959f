#!/usr/bin/env bash
# Publishes the synth-city OpenClaw skill (integrations/openclaw/skill/) to ClawHub with the
# `clawhub` CLI (`npm i -g clawhub`, then `clawhub login`), retrying with backoff.
#
# The version is the `version:` of the skill's SKILL.md front matter (the one place it is
# kept; bump it there before publishing), the slug its `name:`. It does not log in, bump
# versions or install clawhub.
#
#   integrations/openclaw/publish.sh [--changelog TEXT] [--tags a,b] [--dry-run]
#
# CLAWHUB_PUBLISH_ATTEMPTS (default 5) and CLAWHUB_RETRY_DELAY (seconds before the second
# attempt, doubled after each failure; default 2) tune the retries.
set -euo pipefail

die() {
  echo "publish.sh: $*" >&2
  exit 2
}

usage() {
  cat <<'EOF'
Publishes the synth-city skill to ClawHub (clawhub publish), retrying with backoff.

usage: integrations/openclaw/publish.sh [--changelog TEXT] [--tags a,b] [--dry-run]

  --changelog TEXT  release notes (default: "synth-city skill VERSION")
  --tags a,b        ClawHub tags (default: latest)
  --dry-run         print the clawhub command, run nothing

The version comes from the `version:` line of integrations/openclaw/skill/SKILL.md.
Needs the clawhub CLI (npm i -g clawhub) and a login (clawhub login).
EOF
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
skill="$here/skill"
changelog=""
tags="latest"
dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --changelog)
      [ $# -ge 2 ] || die "--changelog needs a text"
      changelog=$2
      shift 2
      ;;
    --tags)
      [ $# -ge 2 ] && [ -n "$2" ] || die "--tags needs a comma-separated list, e.g. --tags latest"
      tags=$2
      shift 2
      ;;
    --dry-run) dry=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1'; see --help" ;;
  esac
done

[ -f "$skill/SKILL.md" ] || die "no skill at $skill/SKILL.md"
# A key of the front matter (the lines between the first two `---`).
front() {
  awk -v key="$1" 'NR == 1 { if ($0 != "---") exit; next }
    $0 == "---" { exit }
    index($0, key ": ") == 1 { print substr($0, length(key) + 3); exit }' "$skill/SKILL.md"
}
slug=$(front name)
version=$(front version)
[ -n "$slug" ] || die "SKILL.md has no 'name:' in its front matter"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] ||
  die "SKILL.md's front matter needs 'version: X.Y.Z' (semver), got '$version'"
[ -n "$changelog" ] || changelog="synth-city skill $version"

cmd=(clawhub publish "$skill" --slug "$slug" --name "$slug" --version "$version"
  --changelog "$changelog" --tags "$tags")
if [ "$dry" = 1 ]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
command -v clawhub > /dev/null ||
  die "the clawhub CLI is not installed: install it with 'npm i -g clawhub', log in with 'clawhub login', then run this again"

attempts=${CLAWHUB_PUBLISH_ATTEMPTS:-5}
delay=${CLAWHUB_RETRY_DELAY:-2}
[[ "$attempts" =~ ^[1-9][0-9]*$ ]] || die "CLAWHUB_PUBLISH_ATTEMPTS must be a whole number >= 1, got '$attempts'"
[[ "$delay" =~ ^[0-9]+$ ]] || die "CLAWHUB_RETRY_DELAY must be whole seconds, got '$delay'"
echo "publishing $slug $version from $skill"
for ((i = 1; ; i++)); do
  rc=0
  "${cmd[@]}" || rc=$?
  if [ "$rc" -eq 0 ]; then
    echo "published $slug $version (attempt $i of $attempts)"
    exit 0
  fi
  if [ "$i" -ge "$attempts" ]; then
    die "clawhub publish failed $attempts times (last exit $rc); check 'clawhub whoami' and that version $version is not already published"
  fi
  echo "clawhub publish failed (exit $rc), attempt $i of $attempts; retrying in ${delay}s" >&2
  sleep "$delay"
  delay=$((delay * 2))
done
