# Shared by ops/setup.sh and ops/test.sh: installs redis-server when missing.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_redis_installed() {
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "==> installing redis-server (apt-get)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools
  fi
}

# The dashboard test renders /dashboard in headless Chromium (Debian's package).
ensure_chromium_installed() {
  if ! command -v chromium >/dev/null 2>&1; then
    echo "==> installing chromium (apt-get)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
  fi
}
