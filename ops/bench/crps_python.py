#!/usr/bin/env python3
"""Time the SN50 validator's CRPS path (numpy + properscoring with numba) on the cases that
`synth-city bench crps --write-cases FILE` writes, and check that every result equals the
case's expected value bit for bit.

The scorer below follows the validator's `calculate_crps_for_miner` step by step (see
shared/spec/sn50-protocol-and-scoring.md section 2): per scoring interval, strided prices,
basis-point changes (or absolute prices for `_abs`, the first change only for `_gaps`), one
`properscoring.crps_ensemble(obs, ensemble)` call per observed change, `ndarray.sum()` per block
of consecutive observed changes, and a float total. What is timed is that function on the arrays
the validator builds (`np.array(paths).astype(float)`), as the Rust side times its scorer on
parsed paths.

Usage:
    python3 ops/bench/crps_python.py CASES.json [--iterations N] [--json] [--install]

--install runs `pip install numpy properscoring numba` first. Without numba, properscoring falls
back to its pure-numpy kernel, which is not the validator's path: the script refuses to time it
unless --allow-no-numba is given.
"""

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time


def install():
    subprocess.check_call(
        [sys.executable, "-m", "pip", "install", "-q", "numpy", "properscoring", "numba"]
    )


def load_scorer():
    import numpy as np
    import properscoring
    from properscoring import crps_ensemble

    try:
        from properscoring._gufuncs import _crps_ensemble_gufunc  # noqa: F401

        numba_ok = True
    except Exception:  # numba missing or broken
        numba_ok = False

    def changes(prices, steps, is_abs, is_gap):
        x = prices[:, ::steps]
        if is_gap:
            x = x[:, :2]
        if is_abs:
            return x[:, 1:]
        return (np.diff(x, axis=1) / x[:, :-1]) * 10_000

    def blocks(arr):
        observed = ~np.isnan(arr)
        starts = observed & np.concatenate(([True], ~observed[:-1]))
        numbers = np.cumsum(starts) - 1
        return np.where(observed, numbers, -1)

    def calculate_crps_for_miner(sims, real, time_increment, intervals):
        total = 0.0
        for name, seconds in intervals:
            steps = int(seconds / time_increment)
            is_abs = name.endswith("_abs")
            is_gap = name.endswith("_gaps")
            if is_abs:
                while real[::steps].shape[0] == 1 and steps > 1:
                    steps -= 1
            if np.any(sims == 0):
                return -1.0
            sim_changes = changes(sims, steps, is_abs, is_gap)
            real_changes = changes(real.reshape(1, -1), steps, is_abs, is_gap)
            labels = blocks(real_changes[0])
            if len(labels) == 0:
                continue
            interval_total = 0.0
            for block in np.unique(labels):
                if block == -1:
                    continue
                mask = labels == block
                sim_block = sim_changes[:, mask]
                real_block = real_changes[0, mask]
                values = np.array(
                    [
                        crps_ensemble(real_block[t], sim_block[:, t])
                        for t in range(sim_block.shape[1])
                    ]
                )
                if is_abs:
                    values = values / real[-1] * 10_000
                interval_total += values.sum()
            total += float(interval_total)
        return total

    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "properscoring": getattr(properscoring, "__version__", "?"),
    }
    try:
        import numba

        versions["numba"] = numba.__version__
    except Exception:
        versions["numba"] = None
    return calculate_crps_for_miner, numba_ok, versions, np


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", help="file written by `synth-city bench crps --write-cases`")
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--install", action="store_true")
    ap.add_argument("--allow-no-numba", action="store_true")
    args = ap.parse_args()
    if args.install:
        install()
    try:
        score, numba_ok, versions, np = load_scorer()
    except ImportError as e:
        sys.exit(f"numpy/properscoring are not installed ({e}); run with --install")
    if not numba_ok and not args.allow_no_numba:
        sys.exit(
            "numba is not available: properscoring would use its numpy fallback, which is not "
            "the validator's path (pass --allow-no-numba to time it anyway)"
        )
    with open(args.cases) as f:
        cases = json.load(f)["cases"]
    results = []
    mismatches = 0
    for c in cases:
        sims = np.array(
            [[np.nan if x is None else x for x in p] for p in c["paths"]]
        ).astype(float)
        real = np.array([np.nan if x is None else x for x in c["real"]], dtype=float)
        intervals = [(n, s) for n, s in c["intervals"]]
        inc = c["time_increment"]
        got = score(sims, real, inc, intervals)  # warm-up (numba compiles on first call)
        expected = c.get("expected")
        exact = expected is not None and float(got).hex() == float(expected).hex()
        mismatches += 0 if exact else 1
        ms = []
        for _ in range(max(1, args.iterations)):
            t = time.perf_counter()
            v = score(sims, real, inc, intervals)
            ms.append((time.perf_counter() - t) * 1e3)
            if float(v).hex() != float(got).hex():
                sys.exit(f"{c.get('name')}: result changed between runs")
        results.append(
            {
                "name": c.get("name"),
                "paths": int(sims.shape[0]),
                "points": int(sims.shape[1]),
                "iterations": len(ms),
                "mean_ms": statistics.fmean(ms),
                "median_ms": statistics.median(ms),
                "min_ms": min(ms),
                "crps": got,
                "expected": expected,
                "bit_exact": exact,
            }
        )
    out = {"versions": versions, "numba": numba_ok, "cases": results}
    if args.json:
        print(json.dumps(out))
    else:
        print(f"python {versions['python']}, numpy {versions['numpy']}, numba {versions['numba']}")
        for r in results:
            print(
                f"{r['name']}: mean {r['mean_ms']:.3f} ms, median {r['median_ms']:.3f} ms, "
                f"min {r['min_ms']:.3f} ms over {r['iterations']}; crps {r['crps']!r} "
                f"{'bit-exact' if r['bit_exact'] else 'DIFFERS from ' + repr(r['expected'])}"
            )
    if mismatches:
        sys.exit(f"{mismatches} case(s) differ from the expected value")


if __name__ == "__main__":
    main()
