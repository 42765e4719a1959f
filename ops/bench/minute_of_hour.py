#!/usr/bin/env python3
"""Does the minute of the hour carry volatility a 1-minute forecast could use?

For each asset's 1-minute file: one-step returns forecast as Gaussians whose width is a 2-hour
EWMA of the returns before them (the 1 h anchor's level), times a calibration factor k, with and
without a minute-of-the-hour profile (mean absolute return per minute over the mean, fitted on
the file's first half of returns, shrunk towards 1). Prints the mean CRPS on the second half,
best k per row, as a ratio to the flat profile's. It measures the 1-minute term only (26 % of
the Crypto 1 h score); it is an upper bound for what the profile adds to the anchor there.

    python3 ops/bench/minute_of_hour.py [DATA_DIR (../shared/data)] [ASSETS (BTC,ETH,SOL)]
"""
import math
import os
import sys

SQRT_PI = math.sqrt(math.pi)


def crps_gauss(x, s):
    z = x / s
    cdf = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    pdf = math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    return s * (z * (2 * cdf - 1) + 2 * pdf - 1 / SQRT_PI)


def main():
    data = sys.argv[1] if len(sys.argv) > 1 else "../shared/data"
    assets = (sys.argv[2] if len(sys.argv) > 2 else "BTC,ETH,SOL").split(",")
    lam = 0.5 ** (1 / 120)  # a 2-hour half-life in 1-minute bars
    for a in assets:
        ts, close = [], []
        with open(os.path.join(data, f"{a}_1m.csv")) as f:
            next(f)
            for line in f:
                p = line.split(",")
                ts.append(int(float(p[0])))
                close.append(float(p[4]))
        if ts[0] > 10**11:
            ts = [t // 1000 for t in ts]
        mid = ts[len(ts) // 2]
        var, s_abs, n_abs, rows = None, [0.0] * 60, [0] * 60, []
        for i in range(1, len(ts)):
            if ts[i] - ts[i - 1] != 60:
                continue
            r = math.log(close[i] / close[i - 1])
            if var is None:
                var = r * r + 1e-12
                continue
            m = (ts[i] // 60) % 60
            if ts[i] < mid:
                s_abs[m] += abs(r)
                n_abs[m] += 1
            else:
                rows.append((r, math.sqrt(var), m))
            var = lam * var + (1 - lam) * r * r
        mean = sum(s_abs) / sum(n_abs)
        prof = [s_abs[m] / n_abs[m] / mean for m in range(60)]
        norm = math.sqrt(sum(p * p for p in prof) / 60)
        prof = [p / norm for p in prof]
        loud = sorted(range(60), key=lambda m: -prof[m])[:3]
        quiet = sorted(range(60), key=lambda m: prof[m])[:3]
        print(f"{a}: {len(rows)} returns scored; loudest minutes "
              + ", ".join(f":{m:02d} x{prof[m]:.2f}" for m in loud)
              + "; quietest " + ", ".join(f":{m:02d} x{prof[m]:.2f}" for m in quiet))
        flat = None
        for shrink in (0.0, 0.5, 0.75, 1.0):
            pr = [1 + shrink * (p - 1) for p in prof]
            best = min(
                (sum(crps_gauss(r, s * k * pr[m]) for r, s, m in rows), k)
                for k in (0.8, 0.85, 0.9, 0.95, 1.0)
            )
            flat = flat or best[0]
            print(f"  profile shrunk {shrink:.2f}: best k {best[1]:.2f}, "
                  f"mean CRPS ratio to flat {best[0] / flat:.4f}")


if __name__ == "__main__":
    main()
