#!/usr/bin/env python3
"""Writes a chimera-log directory of realistic lines for the CLI benchmark (bench/cli_query.sh).

Usage: bench/cli_logs.py DIR MB [SEED]

About MB megabytes of JSON lines in the logger's exact shape (key order, RFC 3339 timestamps with
microseconds and Z, integers as written, 128-bit values as decimal numbers), as `chimera.log`
rotated every 100 MB (a tenth of MB when smaller) into gzip backups named as the logger names them (`gzip -6`, the logger's
level), the last part left as the plain current file. The events are a trading bot's day: many
price updates and liquidation checks, RPC latencies, a few executions, state divergences (1%) and
RPC failures with an exception (0.2%); addresses, hashes and amounts vary line to line, so the
backups compress as real ones do (about 4x), not as a repeated line would (70x).
"""
import datetime
import os
import random
import subprocess
import sys

ROTATE = 100 * 1024 * 1024


def main():
    out, megabytes = sys.argv[1], int(sys.argv[2])
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 31)
    os.makedirs(out, exist_ok=True)
    target = megabytes * 1024 * 1024
    rotate = max(1024 * 1024, min(ROTATE, target // 10))
    start = datetime.datetime(2026, 1, 15, 0, 0, 0, tzinfo=datetime.timezone.utc)
    micros = 0
    block = 24_000_000
    protocols = ["aave", "moonwell", "compound", "morpho", "spark"]
    assets = ["WETH", "USDC", "cbBTC", "wstETH", "DAI", "AERO"]
    providers = ["alchemy", "quicknode", "infura", "local"]
    hexes = lambda n: rng.getrandbits(n * 4).to_bytes(n // 2, "big").hex()
    written = 0
    part = bytearray()
    parts = []

    def stamp_of(us):
        t = start + datetime.timedelta(microseconds=us)
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}Z"

    def flush(final):
        nonlocal part
        if final:
            with open(os.path.join(out, "chimera.log"), "wb") as f:
                f.write(part)
        else:
            name = f"chimera.log.{stamp_of(micros).replace('-', '').replace(':', '')}.gz"
            with open(os.path.join(out, name), "wb") as f:
                subprocess.run(["gzip", "-6", "-c"], input=bytes(part), stdout=f, check=True)
            parts.append(name)
        part = bytearray()

    n = 0
    while written < target:
        n += 1
        micros += rng.randrange(50, 4000)
        if n % 12 == 0:
            block += 1
        ts = stamp_of(micros)
        roll = rng.random()
        if roll < 0.010:
            cached = rng.getrandbits(100)
            canonical = cached + rng.getrandbits(90)
            bps = rng.randrange(0, 400)
            line = (f'{{"timestamp":"{ts}","level":"WARNING","module":"state_engine","event":"state_divergence",'
                    f'"context":{{"protocol":"{rng.choice(protocols)}","user":"0x{hexes(40)}","field":"total_debt",'
                    f'"cached_value":{cached},"canonical_value":{canonical},"divergence_bps":{bps},"block_number":{block}}}}}')
        elif roll < 0.012:
            provider = rng.choice(providers)
            line = (f'{{"timestamp":"{ts}","level":"ERROR","module":"rpc","event":"rpc_failed",'
                    f'"context":{{"provider":"{provider}","method":"eth_call","attempt":{rng.randrange(1, 4)}}},'
                    f'"exception":{{"type":"RpcError","message":"request timed out after {rng.randrange(1000, 5000)} ms",'
                    f'"causes":["connection reset by peer"]}}}}')
        elif roll < 0.020:
            line = (f'{{"timestamp":"{ts}","level":"INFO","module":"executor","event":"execution_attempt",'
                    f'"context":{{"block_number":{block},"protocol":"{rng.choice(protocols)}","borrower":"0x{hexes(40)}",'
                    f'"simulation_success":{"true" if rng.random() < 0.7 else "false"},'
                    f'"simulated_profit_usd":"{rng.randrange(1, 50000)}.{rng.randrange(100):02d}",'
                    f'"tx_hash":"0x{hexes(64)}","status":"{rng.choice(["submitted", "reverted", "skipped"])}"}}}}')
        elif roll < 0.150:
            line = (f'{{"timestamp":"{ts}","level":"INFO","module":"metrics","event":"performance_metrics",'
                    f'"context":{{"metrics":{{"rpc_latency_ms":"{rng.randrange(5, 900)}","queue_depth":"{rng.randrange(0, 64)}",'
                    f'"provider":"{rng.choice(providers)}"}}}}}}')
        elif roll < 0.550:
            line = (f'{{"timestamp":"{ts}","level":"DEBUG","module":"prices","event":"price_update",'
                    f'"context":{{"asset":"{rng.choice(assets)}","price_usd":{rng.uniform(0.5, 100000):.6f},'
                    f'"source":"{rng.choice(["chainlink", "pyth", "uniswap_v3"])}","block_number":{block}}}}}')
        else:
            line = (f'{{"timestamp":"{ts}","level":"INFO","module":"state_engine","event":"liquidation_check",'
                    f'"context":{{"protocol":"{rng.choice(protocols)}","borrower":"0x{hexes(40)}",'
                    f'"health_factor":{rng.uniform(0.9, 3.0):.6f},"debt_usd":"{rng.randrange(10, 2_000_000)}.{rng.randrange(100):02d}",'
                    f'"block_number":{block}}}}}')
        data = line.encode() + b"\n"
        part += data
        written += len(data)
        if len(part) >= rotate:
            flush(False)
    flush(True)
    print(f"{n} lines, {written} bytes, {len(parts)} gzip backups in {out}")


if __name__ == "__main__":
    main()
