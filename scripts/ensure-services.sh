#!/usr/bin/env bash
# Make sure the services CareHub's tests need are installed and running, idempotently.
#
# - Installs Debian's mosquitto, postgresql and chromium packages when missing (as root;
#   `apt-get update` runs once, and only when something must be installed). Tests start
#   Mosquitto brokers of their own, so no Mosquitto daemon needs to run.
# - Starts the PostgreSQL cluster when it does not accept connections.
# - Makes sure `postgres` can log in over TCP on 127.0.0.1 without a password prompt: trust
#   auth if configured, else the password "postgres" (set here when needed).
# - Writes var/test-env.sh with TEST_PG_ADMIN_URL for the Makefile to source. A value already
#   in the environment wins, in this script and in that file.
#
# Safe to run again and again, and on a machine whose services already run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

ENV_FILE=var/test-env.sh
PG_HOST=127.0.0.1
PG_PORT=5432
DEFAULT_PG_ADMIN_URL="postgresql+psycopg://postgres:postgres@${PG_HOST}:${PG_PORT}/postgres"
PG_ADMIN_URL="${TEST_PG_ADMIN_URL:-$DEFAULT_PG_ADMIN_URL}"

say() { printf 'ensure-services: %s\n' "$*"; }
die() { printf 'ensure-services: error: %s\n' "$*" >&2; exit 1; }
is_root() { [[ $(id -u) -eq 0 ]]; }

# --- Packages ------------------------------------------------------------------------------

have_mosquitto() { command -v mosquitto >/dev/null 2>&1 || [[ -x /usr/sbin/mosquitto ]]; }
have_postgresql() {
    command -v pg_ctlcluster >/dev/null 2>&1 && command -v psql >/dev/null 2>&1 &&
        compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}
have_chromium() { command -v chromium >/dev/null 2>&1 || [[ -x /usr/bin/chromium ]]; }

missing=()
have_mosquitto || missing+=(mosquitto)
have_postgresql || missing+=(postgresql)
have_chromium || missing+=(chromium)

if ((${#missing[@]})); then
    if ! is_root; then
        die "missing: ${missing[*]}. Run this script as root (it installs them with apt-get), \
or install them yourself: apt-get install ${missing[*]}"
    fi
    command -v apt-get >/dev/null 2>&1 ||
        die "missing: ${missing[*]}, and there is no apt-get here to install them with"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
fi
have_mosquitto || die "mosquitto is still missing after the install"
have_postgresql || die "PostgreSQL is still missing after the install"
have_chromium || die "chromium is still missing after the install"

# --- PostgreSQL running ----------------------------------------------------------------------

pg_accepting() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2; }

if ! pg_accepting; then
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -z $version ]]; then
        version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
        is_root || die "no PostgreSQL cluster exists; as root: pg_createcluster $version main"
        say "creating PostgreSQL cluster $version/main"
        pg_createcluster "$version" main
    fi
    is_root || die "PostgreSQL is not accepting connections on $PG_HOST:$PG_PORT; as root: \
pg_ctlcluster --skip-systemctl-redirect $version main start"
    say "starting PostgreSQL $version/main"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 60); do
        pg_accepting && break
        sleep 0.5
    done
    pg_accepting || die "PostgreSQL $version/main did not accept connections on $PG_HOST:$PG_PORT"
fi

# --- PostgreSQL login ----------------------------------------------------------------------

# psql wants a libpq URL; the tests use SQLAlchemy's postgresql+psycopg:// form.
pg_login_works() {
    local libpq_url="${1/postgresql+psycopg:/postgresql:}"
    PGCONNECT_TIMEOUT=5 psql "$libpq_url" -w -X -q -t -A -c 'SELECT 1' >/dev/null 2>&1
}

if ! pg_login_works "$PG_ADMIN_URL"; then
    if [[ -n ${TEST_PG_ADMIN_URL:-} ]]; then
        die "cannot log in with TEST_PG_ADMIN_URL from the environment ($TEST_PG_ADMIN_URL)"
    fi
    is_root || die "cannot log in as postgres on $PG_HOST:$PG_PORT without a password prompt; \
as root run this script, or set TEST_PG_ADMIN_URL to a URL that works"
    say "setting the PostgreSQL user postgres's password to \"postgres\" (for the tests)"
    (cd / && runuser -u postgres -- psql -p "$PG_PORT" -X -q -c "ALTER USER postgres PASSWORD 'postgres'")
    pg_login_works "$PG_ADMIN_URL" ||
        die "still cannot log in as postgres on $PG_HOST:$PG_PORT (check pg_hba.conf)"
fi

# --- Environment for the tests -------------------------------------------------------------

mkdir -p "$(dirname "$ENV_FILE")"
tmp_file="$ENV_FILE.tmp.$$"
{
    printf '# Written by scripts/ensure-services.sh; sourced by the Makefile. Regenerated each run.\n'
    printf 'if [ -z "${TEST_PG_ADMIN_URL:-}" ]; then export TEST_PG_ADMIN_URL=%q; fi\n' "$PG_ADMIN_URL"
} >"$tmp_file"
mv "$tmp_file" "$ENV_FILE"

say "ok: mosquitto, PostgreSQL ($PG_HOST:$PG_PORT) and chromium ready; TEST_PG_ADMIN_URL=$PG_ADMIN_URL"
