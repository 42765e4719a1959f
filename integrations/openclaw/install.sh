#!/usr/bin/env bash
# Installs the synth-city OpenClaw skill (integrations/openclaw/skill/) into an OpenClaw
# workspace, as <workspace>/skills/synth-city/, where OpenClaw loads workspace skills from.
#
# Idempotent: a file is copied only when it is new or differs, files the skill no longer has
# are removed (ClawHub's own metadata, .clawhub/, is left alone), and every change is printed.
# It only copies files: it does not configure OpenClaw, set environment variables or start
# anything.
#
#   integrations/openclaw/install.sh [--workspace DIR] [--dry-run]
#
# The workspace is --workspace, else $OPENCLAW_WORKSPACE, else ~/.openclaw/workspace.
set -euo pipefail

die() {
  echo "install.sh: $*" >&2
  exit 2
}

usage() {
  cat <<'EOF'
Installs the synth-city skill into an OpenClaw workspace's skills/synth-city/.

usage: integrations/openclaw/install.sh [--workspace DIR] [--dry-run]

  --workspace DIR  the OpenClaw workspace (default: $OPENCLAW_WORKSPACE, else
                   ~/.openclaw/workspace); the skill lands in DIR/skills/synth-city
  --dry-run        print what would change, change nothing

Running it again is safe: unchanged files are left as they are.
EOF
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src="$here/skill"
workspace="${OPENCLAW_WORKSPACE:-}"
[ -n "$workspace" ] || workspace="${HOME:?HOME is not set; give --workspace DIR}/.openclaw/workspace"
dry=0
while [ $# -gt 0 ]; do
  case "$1" in
    --workspace)
      [ $# -ge 2 ] && [ -n "$2" ] || die "--workspace needs a directory, e.g. --workspace ~/.openclaw/workspace"
      workspace=$2
      shift 2
      ;;
    --workspace=*)
      workspace=${1#*=}
      [ -n "$workspace" ] || die "--workspace needs a directory, e.g. --workspace=~/.openclaw/workspace"
      shift
      ;;
    --dry-run) dry=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument '$1'; see --help" ;;
  esac
done

[ -f "$src/SKILL.md" ] || die "no skill at $src/SKILL.md; run this script from a synth-city checkout"
[ ! -e "$workspace" ] || [ -d "$workspace" ] || die "workspace '$workspace' exists and is not a directory"
dest="$workspace/skills/synth-city"
act() { [ "$dry" = 1 ] || "$@"; }
say() { if [ "$dry" = 1 ]; then echo "would $*"; else echo "$*"; fi; }

if [ ! -d "$dest" ]; then
  say "create $dest"
  act mkdir -p "$dest"
fi

added=0 updated=0 removed=0 unchanged=0
while IFS= read -r -d '' f; do
  rel=${f#"$src"/}
  to="$dest/$rel"
  if [ -f "$to" ] && cmp -s "$f" "$to"; then
    unchanged=$((unchanged + 1))
    continue
  fi
  if [ -e "$to" ]; then
    say "update $rel"
    updated=$((updated + 1))
  else
    say "add $rel"
    added=$((added + 1))
  fi
  # copy beside, then rename: a reader never sees half a file
  act mkdir -p "$(dirname "$to")"
  act cp "$f" "$to.tmp.$$"
  act mv -f "$to.tmp.$$" "$to"
done < <(find "$src" -type f -print0 | sort -z)

if [ -d "$dest" ]; then
  while IFS= read -r -d '' f; do
    rel=${f#"$dest"/}
    case "$rel" in .clawhub/* | .clawdhub/*) continue ;; esac
    if [ ! -f "$src/$rel" ]; then
      say "remove $rel (no longer part of the skill)"
      act rm -f "$f"
      removed=$((removed + 1))
    fi
  done < <(find "$dest" -type f -print0 | sort -z)
  act find "$dest" -mindepth 1 -type d -empty -delete
fi

if [ $((added + updated + removed)) -eq 0 ]; then
  echo "synth-city skill already up to date in $dest ($unchanged files)"
else
  summary="$added added, $updated updated, $removed removed, $unchanged unchanged in $dest"
  if [ "$dry" = 1 ]; then echo "dry run, nothing changed: $summary"; else echo "installed: $summary"; fi
fi

for bin in jq; do
  command -v "$bin" > /dev/null || echo "note: $bin is not on PATH; the skill's examples use it"
done
if ! command -v synth-city > /dev/null && ! command -v curl > /dev/null; then
  echo "note: neither synth-city nor curl is on PATH; the skill needs one of them"
fi
echo "The skill needs SYNTH_BRIDGE_URL, BRIDGE_API_KEY and SYNTH_BOT_ID in the agent's environment"
echo "(or skills.entries.synth-city.env / .apiKey in ~/.openclaw/openclaw.json); new sessions load it."
