# Shared by ops/setup.sh and ops/test.sh: installs the Debian packages they need when missing.
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# ensure_command CMD PACKAGE...: apt-get install the packages unless CMD is on PATH.
ensure_command() {
  local cmd=$1; shift
  if ! command -v "$cmd" >/dev/null 2>&1; then
    echo "==> installing $* (apt-get, for $cmd)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
  fi
}

# redis-server also runs Sentinel (`redis-server sentinel.conf --sentinel`: tests/sentinel.rs).
ensure_redis_installed() { ensure_command redis-server redis-server redis-tools; }

# tests/redis_tls.rs makes its CA and certificates with the openssl CLI (Debian's
# redis-server is built with TLS).
ensure_openssl_installed() { ensure_command openssl openssl; }

# tests/store.rs and tests/three_machines.rs run moto's S3 server from a venv they make under
# flock (python3 -m venv, then pip install -r ops/requirements-moto.txt).
ensure_moto_prereqs_installed() {
  ensure_command python3 python3 python3-venv python3-pip
  ensure_command flock util-linux
}

# The dashboard test renders /dashboard in headless Chromium (Debian's package).
ensure_chromium_installed() { ensure_command chromium chromium; }

# The OpenClaw skill's examples (tests/openclaw_skill.rs) run curl and jq.
ensure_skill_tools_installed() {
  ensure_command curl curl
  ensure_command jq jq
}

# tests/observability.rs runs a real Prometheus (and promtool) against a worker and the miner.
# Under systemd the package also starts its own Prometheus on :9090; the tests never use it.
ensure_prometheus_installed() { ensure_command prometheus prometheus; }
