#!/usr/bin/env bash
# Installs what tandem's build, tests and local platform need: Go modules,
# and Debian's postgresql and redis-server packages (as root, with apt-get,
# when they are missing). As an ordinary user it says what to install.
set -euo pipefail

have_postgres() {
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null 2>&1
}
have_redis() {
  command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]
}

if ! command -v go >/dev/null 2>&1; then
  echo "deps: Go is not on PATH; install Go 1.26 or newer (https://go.dev/doc/install)" >&2
  exit 1
fi

missing=()
have_postgres || missing+=(postgresql)
have_redis || missing+=(redis-server)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "deps: installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "deps: missing Debian packages: ${missing[*]}" >&2
    echo "deps: install them as root (sudo apt-get install ${missing[*]}) and run make again" >&2
    exit 1
  fi
fi

go mod download
echo "deps: ok (Go modules, PostgreSQL, redis-server)"
