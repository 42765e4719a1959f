#!/usr/bin/env python3
"""Time the SN50 validator's scoring path (numpy + properscoring with numba) on the cases that
`synth-city bench crps --write-cases FILE` writes, and check that every result equals the
case's expected value bit for bit.

Price-only cases (no `vol_blocks`): the scorer below follows the validator's
`calculate_crps_for_miner` step by step (see shared/spec/sn50-protocol-and-scoring.md section 2):
per scoring interval, strided prices, basis-point changes (or absolute prices for `_abs`, the
first change only for `_gaps`), one `properscoring.crps_ensemble(obs, ensemble)` call per observed
change, `ndarray.sum()` per block of consecutive observed changes, and a float total.

Crypto 1 h total-score cases (with `vol_blocks`): the validator's `calculate_total_score_for_miner`
of December 2026 (shared/spec/sn50-validator-2026-12.md section 3): the price CRPS, then unless it
is -1, for each block size in the file's order, basis-point step returns of every path and of the
real path, cut into whole blocks, `np.nanstd(ddof=1)` per block (NaN with fewer than two observed
returns), one `crps_ensemble(real_vol, path_vols)` per block whose real volatility is observed,
summed with Python's `sum` (from the integer 0), `float`, weighted and added to the price CRPS.
Each such case is timed twice, alternating: the price part alone and the total, and both are
checked against the file's `price_crps` and `total` (the maximum absolute difference is printed
when they are not bit-exact).

What is timed is scoring the arrays the validator builds (`np.array(paths).astype(float)`), as
the Rust side times its scorer on parsed paths.

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

    def block_volatilities(prices, steps):
        """Rows x whole blocks of `steps` returns: the sample std (ddof=1) of each block's
        basis-point step returns, NaN where fewer than two of them are observed (nanstd would
        warn there, so only the other blocks go through it)."""
        returns = np.diff(prices, axis=1) / prices[:, :-1] * 10_000
        n_blocks = returns.shape[1] // steps
        cube = returns[:, : n_blocks * steps].reshape(returns.shape[0], n_blocks, steps)
        enough = np.sum(~np.isnan(cube), axis=2) >= 2
        vols = np.full(enough.shape, np.nan)
        vols[enough] = np.nanstd(cube[enough], axis=1, ddof=1)
        return vols

    def calculate_vol_crps_for_miner(sims, real, time_increment, vol_blocks):
        total = 0.0
        for _name, seconds, weight in vol_blocks:
            steps = int(seconds / time_increment)
            sim_vols = block_volatilities(sims, steps)
            real_vols = block_volatilities(real.reshape(1, -1), steps)[0]
            observed = np.flatnonzero(~np.isnan(real_vols))
            if observed.size == 0:
                continue  # no observed block of this size
            size_sum = float(
                sum(crps_ensemble(real_vols[b], sim_vols[:, b]) for b in observed)
            )
            total += weight * size_sum
        return total

    def calculate_total_score_for_miner(sims, real, time_increment, intervals, vol_blocks):
        price = calculate_crps_for_miner(sims, real, time_increment, intervals)
        if not vol_blocks or price == -1.0:
            return price
        return price + calculate_vol_crps_for_miner(sims, real, time_increment, vol_blocks)

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
    return calculate_crps_for_miner, calculate_total_score_for_miner, numba_ok, versions, np


# The Crypto 1h blocks' weights as the validator computes them (VOL_CRPS_LAMBDA = 5.25).
VALIDATOR_VOL_WEIGHTS = {"vol_60min": 5.25 / 3, "vol_15min": 5.25 / 12, "vol_5min": 5.25 / 36}


def stats(ms):
    return {
        "mean_ms": statistics.fmean(ms),
        "median_ms": statistics.median(ms),
        "min_ms": min(ms),
    }


def exact(got, expected):
    return expected is not None and float(got).hex() == float(expected).hex()


def abs_diff(got, expected):
    if expected is None:
        return None
    return abs(float(got) - float(expected))


def time_total_case(c, sims, real, price_score, total_score, iterations):
    """Time the price part and the total of one 1 h case, alternating, and check both."""
    inc = c["time_increment"]
    intervals = [(n, s) for n, s in c["intervals"]]
    blocks = [(n, s, w) for n, s, w in c["vol_blocks"]]
    for n, _s, w in blocks:
        if n in VALIDATOR_VOL_WEIGHTS and VALIDATOR_VOL_WEIGHTS[n] != w:
            print(f"{c.get('name')}: weight of {n} is {w!r}, the validator's is "
                  f"{VALIDATOR_VOL_WEIGHTS[n]!r}", file=sys.stderr)
    price = price_score(sims, real, inc, intervals)  # warm-up
    total = total_score(sims, real, inc, intervals, blocks)
    price_ms, total_ms = [], []
    for _ in range(max(1, iterations)):
        t = time.perf_counter()
        p = price_score(sims, real, inc, intervals)
        price_ms.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        v = total_score(sims, real, inc, intervals, blocks)
        total_ms.append((time.perf_counter() - t) * 1e3)
        if float(p).hex() != float(price).hex() or float(v).hex() != float(total).hex():
            sys.exit(f"{c.get('name')}: result changed between runs")
    exp_price, exp_total = c.get("price_crps"), c.get("total")
    return {
        "name": c.get("name"),
        "asset": c.get("asset"),
        "paths": int(sims.shape[0]),
        "points": int(sims.shape[1]),
        "iterations": len(price_ms),
        "price_ms": stats(price_ms),
        "total_ms": stats(total_ms),
        "price_crps": price,
        "total_score": total,
        "expected_price_crps": exp_price,
        "expected_total": exp_total,
        "expected_from": c.get("expected_from"),
        "price_abs_diff": abs_diff(price, exp_price),
        "total_abs_diff": abs_diff(total, exp_total),
        "bit_exact": exact(price, exp_price) and exact(total, exp_total),
    }


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
        score, total_score, numba_ok, versions, np = load_scorer()
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
    totals = []
    mismatches = 0
    for c in cases:
        sims = np.array(
            [[np.nan if x is None else x for x in p] for p in c["paths"]]
        ).astype(float)
        real = np.array([np.nan if x is None else x for x in c["real"]], dtype=float)
        if c.get("vol_blocks"):
            r = time_total_case(c, sims, real, score, total_score, args.iterations)
            mismatches += 0 if r["bit_exact"] else 1
            totals.append(r)
            continue
        intervals = [(n, s) for n, s in c["intervals"]]
        inc = c["time_increment"]
        got = score(sims, real, inc, intervals)  # warm-up (numba compiles on first call)
        expected = c.get("expected")
        ok = exact(got, expected)
        mismatches += 0 if ok else 1
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
                **stats(ms),
                "crps": got,
                "expected": expected,
                "abs_diff": abs_diff(got, expected),
                "bit_exact": ok,
            }
        )
    summary = None
    if totals:
        # The median over prompts of each prompt's median, as `bench crps` summarises.
        price = statistics.median(t["price_ms"]["median_ms"] for t in totals)
        total = statistics.median(t["total_ms"]["median_ms"] for t in totals)
        diffs = [t["total_abs_diff"] for t in totals if t["total_abs_diff"] is not None]
        summary = {
            "prompts": len(totals),
            "price_median_ms": price,
            "total_median_ms": total,
            "total_over_price": total / price,
            "max_total_abs_diff": max(diffs) if diffs else None,
        }
    out = {
        "versions": versions,
        "numba": numba_ok,
        "cases": results,
        "totals": totals,
        "totals_summary": summary,
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"python {versions['python']}, numpy {versions['numpy']}, numba {versions['numba']}")
        for r in results:
            print(
                f"{r['name']}: mean {r['mean_ms']:.3f} ms, median {r['median_ms']:.3f} ms, "
                f"min {r['min_ms']:.3f} ms over {r['iterations']}; crps {r['crps']!r} "
                f"{'bit-exact' if r['bit_exact'] else 'DIFFERS from ' + repr(r['expected']) + ' by ' + repr(r['abs_diff'])}"
            )
        for t in totals:
            verdict = (
                "bit-exact"
                if t["bit_exact"]
                else f"DIFFERS: price by {t['price_abs_diff']!r}, total by {t['total_abs_diff']!r}"
            )
            print(
                f"{t['name']} [1 h total]: price median {t['price_ms']['median_ms']:.3f} ms, "
                f"total median {t['total_ms']['median_ms']:.3f} ms over {t['iterations']}; "
                f"total {t['total_score']!r} {verdict} (expected from {t['expected_from']})"
            )
        if summary:
            print(
                f"1 h prompts: {summary['prompts']}; median per prompt: price "
                f"{summary['price_median_ms']:.3f} ms, total {summary['total_median_ms']:.3f} ms "
                f"({summary['total_over_price']:.2f}x the price part); max |total - expected| "
                f"{summary['max_total_abs_diff']!r}"
            )
    if mismatches:
        sys.exit(f"{mismatches} case(s) differ from the expected value")


if __name__ == "__main__":
    main()
