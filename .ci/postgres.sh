# Start a local PostgreSQL server for the store tests and export CLOUDOPS_TEST_POSTGRES_URL.
#
# Meant to be sourced (`. .ci/postgres.sh`) by .ci/run as root on Debian; running it directly
# works too (it then only prints the URL). Idempotent: installs the server only when missing,
# starts the cluster only when stopped, creates the role and database only once.
# The store tests create (and drop) one database per test, so the role may create databases.

_cloudops_postgres_setup() {
    local role=cloudops_test database=cloudops_test
    local password="${CLOUDOPS_TEST_POSTGRES_PASSWORD:-cloudops_test}"
    local as_root="" version cluster port status

    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            as_root="sudo"
        else
            echo "postgres.sh: run as root (or with sudo available) to set up PostgreSQL" >&2
            return 1
        fi
    fi

    # /usr/local/bin/pg_ctl may exist without the server: look for the server binary itself.
    if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        echo "postgres.sh: installing the PostgreSQL server" >&2
        if ! DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -q postgresql >&2; then
            $as_root apt-get update -q >&2 || return 1
            DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -q postgresql >&2 || return 1
        fi
    fi
    version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf "%f\n" | sort -V | tail -n 1)

    cluster=$(pg_lsclusters -h 2>/dev/null | awk -v v="$version" '$1 == v {print $2; exit}')
    if [ -z "$cluster" ]; then
        cluster=main
        $as_root pg_createcluster "$version" "$cluster" >&2 || return 1
    fi
    port=$(pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c {print $3}')
    status=$(pg_lsclusters -h | awk -v v="$version" -v c="$cluster" '$1 == v && $2 == c {print $4}')
    if [ "$status" != "online" ]; then
        $as_root pg_ctlcluster "$version" "$cluster" start >&2 || return 1
    fi

    local tries=0
    until pg_isready -q -h 127.0.0.1 -p "$port"; do
        tries=$((tries + 1))
        if [ "$tries" -ge 30 ]; then
            echo "postgres.sh: PostgreSQL $version/$cluster did not accept connections" \
                "on 127.0.0.1:$port within 30 s; see /var/log/postgresql/" >&2
            return 1
        fi
        sleep 1
    done

    _cloudops_psql() {
        (cd / && $as_root runuser -u postgres -- psql -p "$port" -v ON_ERROR_STOP=1 -qtA "$@")
    }
    if [ "$(_cloudops_psql -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" = "1" ]; then
        _cloudops_psql -c "ALTER ROLE $role WITH LOGIN CREATEDB PASSWORD '$password'" || return 1
    else
        _cloudops_psql -c "CREATE ROLE $role WITH LOGIN CREATEDB PASSWORD '$password'" || return 1
    fi
    if [ "$(_cloudops_psql -c "SELECT 1 FROM pg_database WHERE datname = '$database'")" != "1" ]
    then
        _cloudops_psql -c "CREATE DATABASE $database OWNER $role" || return 1
    fi
    # DROP DATABASE ... WITH (FORCE) in the store tests ends the sessions left on a test
    # database; those of another role too (not a superuser's) with pg_signal_backend.
    _cloudops_psql -c "GRANT pg_signal_backend TO $role" || return 1
    unset -f _cloudops_psql

    CLOUDOPS_TEST_POSTGRES_URL="postgresql+psycopg://$role:$password@127.0.0.1:$port/$database"
    export CLOUDOPS_TEST_POSTGRES_URL
    echo "CLOUDOPS_TEST_POSTGRES_URL=$CLOUDOPS_TEST_POSTGRES_URL"
}

_cloudops_postgres_setup
_cloudops_postgres_status=$?
unset -f _cloudops_postgres_setup
# `return` works when sourced; when run directly it fails and `exit` reports the status.
# shellcheck disable=SC2317
return "$_cloudops_postgres_status" 2>/dev/null || exit "$_cloudops_postgres_status"
