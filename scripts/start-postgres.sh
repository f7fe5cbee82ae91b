# Sourced, not run: `source scripts/start-postgres.sh` (bash) starts a throwaway PostgreSQL server
# for the tests and exports
#
#     CHIMERA_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:<port>/chimera_test
#
# The server has a fresh cluster in a mktemp -d directory (nothing here assumes that target/
# exists), trust auth, listens on 127.0.0.1 only, on a free port, with its Unix socket in that
# directory. It is stopped (pg_ctl -m fast) and the directory removed when the sourcing shell
# exits: this script adds that to the shell's EXIT trap, keeping whatever the trap already did,
# so a caller that sets its own EXIT trap must do so before sourcing this.
#
# If the server binaries (initdb, pg_ctl, postgres) are on neither PATH nor
# /usr/lib/postgresql/*/bin, it installs Debian's `postgresql` package (as root, or through
# sudo). PostgreSQL refuses to run as root: as root, the server runs as the system user
# `chimera-pg`, created if missing. If the server does not come up, its log is printed and the
# sourcing shell exits with 1: the tests that need it never skip silently.

_chimera_pg_fail() {
    echo "start-postgres: $*" >&2
    exit 1
}

# The directory holding initdb, pg_ctl and postgres, from PATH first, else the newest Debian one.
_chimera_pg_find_bin() {
    local initdb dir
    for initdb in "$(command -v initdb 2>/dev/null || true)" \
        $(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -rV); do
        [ -n "$initdb" ] || continue
        dir=$(dirname "$(readlink -f "$initdb")")
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then
            echo "$dir"
            return 0
        fi
    done
    return 1
}

_chimera_pg_install() {
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo > /dev/null ||
            _chimera_pg_fail "PostgreSQL is not installed, and installing it needs root or sudo"
        sudo=(sudo)
    fi
    echo "PostgreSQL server binaries not found: apt-get install -y postgresql"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql && return 0
    echo "apt-get install failed; running apt-get update and trying again"
    "${sudo[@]}" apt-get update -q &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
}

# Runs a server-side command as the cluster's owner (chimera-pg when we are root), from the
# scratch directory: the owner may not be able to read the caller's working directory, and
# initdb and pg_ctl fail when they cannot resolve it.
_chimera_pg_as_owner() {
    (
        cd "$_chimera_pg_dir" || exit 1
        if [ "$(id -u)" -eq 0 ]; then
            runuser -u chimera-pg -- "$@"
        else
            "$@"
        fi
    )
}

_chimera_pg_stop() {
    if [ -n "${_chimera_pg_dir:-}" ] && [ -d "$_chimera_pg_dir" ]; then
        if [ -f "$_chimera_pg_dir/data/postmaster.pid" ]; then
            _chimera_pg_as_owner "$_chimera_pg_bin/pg_ctl" -D "$_chimera_pg_dir/data" -m fast -w stop > /dev/null ||
                _chimera_pg_as_owner "$_chimera_pg_bin/pg_ctl" -D "$_chimera_pg_dir/data" -m immediate -w stop > /dev/null ||
                echo "start-postgres: could not stop the PostgreSQL server in $_chimera_pg_dir" >&2
        fi
        rm -rf "$_chimera_pg_dir"
    fi
}

# Prepends _chimera_pg_stop to the shell's EXIT trap, keeping what the trap already ran.
_chimera_pg_chain_exit_trap() {
    local previous
    previous=$(trap -p EXIT)
    if [ -n "$previous" ]; then
        eval "set -- $previous" # trap -- '<command>' EXIT
        trap "_chimera_pg_stop; $3" EXIT
    else
        trap _chimera_pg_stop EXIT
    fi
}

_chimera_pg_start() {
    local started port version
    started=$EPOCHREALTIME
    if ! _chimera_pg_bin=$(_chimera_pg_find_bin); then
        _chimera_pg_install || _chimera_pg_fail "apt-get install postgresql failed"
        _chimera_pg_bin=$(_chimera_pg_find_bin) ||
            _chimera_pg_fail "postgresql installed, but initdb/pg_ctl/postgres are still not found"
    fi
    version=$("$_chimera_pg_bin/postgres" --version)

    if [ "$(id -u)" -eq 0 ] && ! id -u chimera-pg > /dev/null 2>&1; then
        # Another run may create it at the same moment: only its absence afterwards is an error.
        useradd --system --no-create-home --shell /usr/sbin/nologin chimera-pg ||
            id -u chimera-pg > /dev/null 2>&1 ||
            _chimera_pg_fail "could not create the system user chimera-pg"
    fi

    _chimera_pg_dir=$(mktemp -d) || _chimera_pg_fail "mktemp -d failed"
    _chimera_pg_chain_exit_trap
    if [ "$(id -u)" -eq 0 ]; then
        chown chimera-pg "$_chimera_pg_dir" || _chimera_pg_fail "chown chimera-pg $_chimera_pg_dir failed"
        runuser -u chimera-pg -- test -w "$_chimera_pg_dir" ||
            _chimera_pg_fail "chimera-pg cannot write to $_chimera_pg_dir (is TMPDIR under a private directory?)"
    fi

    _chimera_pg_as_owner "$_chimera_pg_bin/initdb" -D "$_chimera_pg_dir/data" -U postgres \
        --auth=trust --encoding=UTF8 --locale=C --no-sync > "$_chimera_pg_dir/initdb.log" 2>&1 || {
        cat "$_chimera_pg_dir/initdb.log" >&2
        _chimera_pg_fail "initdb failed (its output is above)"
    }
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    # In the configuration file rather than as pg_ctl -o "-c ..." flags: no shell quoting involved.
    cat >> "$_chimera_pg_dir/data/postgresql.conf" << EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$_chimera_pg_dir'
EOF
    if ! _chimera_pg_as_owner "$_chimera_pg_bin/pg_ctl" -D "$_chimera_pg_dir/data" -l "$_chimera_pg_dir/pg.log" \
        -w -t 60 start > /dev/null; then
        echo "PostgreSQL did not start on 127.0.0.1:$port; its log:" >&2
        cat "$_chimera_pg_dir/pg.log" >&2
        _chimera_pg_fail "PostgreSQL did not start"
    fi
    local createdb="$_chimera_pg_bin/createdb"
    [ -x "$createdb" ] || createdb=createdb
    if ! "$createdb" -h 127.0.0.1 -p "$port" -U postgres chimera_test; then
        echo "createdb chimera_test failed; the server's log:" >&2
        cat "$_chimera_pg_dir/pg.log" >&2
        _chimera_pg_fail "could not create the database chimera_test"
    fi
    export CHIMERA_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/chimera_test"
    # For the outage tests: `$CHIMERA_TEST_POSTGRES_CTL stop|start` stops or restarts this server.
    local as_owner=""
    [ "$(id -u)" -eq 0 ] && as_owner="runuser -u chimera-pg --"
    cat > "$_chimera_pg_dir/ctl" << CTL
#!/usr/bin/env bash
set -euo pipefail
cd '$_chimera_pg_dir'
case "\$1" in
    stop) $as_owner '$_chimera_pg_bin/pg_ctl' -D '$_chimera_pg_dir/data' -m fast -w stop > /dev/null ;;
    start) $as_owner '$_chimera_pg_bin/pg_ctl' -D '$_chimera_pg_dir/data' -l '$_chimera_pg_dir/pg.log' -w -t 60 start > /dev/null ;;
    *) echo "usage: \$0 stop|start" >&2; exit 2 ;;
esac
CTL
    chmod 755 "$_chimera_pg_dir/ctl"
    export CHIMERA_TEST_POSTGRES_CTL="$_chimera_pg_dir/ctl"
    echo "$version up at $CHIMERA_TEST_POSTGRES_URL in $(python3 -c "import time; print(f'{time.time() - $started:.1f}')") s"
}

if [ -z "${_chimera_pg_dir:-}" ]; then
    _chimera_pg_start
fi
