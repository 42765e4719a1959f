#!/usr/bin/env python3
"""PyTorch peer of `synth-city bench train --preset P` (workers/trainer/src/zoo/bench.rs).

The same architecture as the Rust presets `baseline_gbm` (TransformerBlock, LSTMBlock, GBMHead)
and `lstm_gbm` (LSTMBlock, GBMHead), layer for layer, at the presets' sizes: 9 input features,
d_model 32, seq_len 64, batch 16, 32 paths, horizon 288; the same loss (sample CRPS of the
cumulative standardised returns, each step scaled by 1/sqrt(k), in the sorted form) and AdamW
(lr 1e-3, weight decay 0.01, no gradient clipping, as in the Rust bench). It times training
steps per second (after 2 warm-up steps) and the median of five 1000 x 289 simulations
(sample 1000 x 288 returns from one window, cumulate in float64, clamp the log move to +-3,
exponentiate, prepend the spot).

Inputs are seeded random tensors of the real shapes, not market features: the timing depends on
the shapes only. The parameter count printed must equal the Rust one (17,570 for baseline_gbm,
9,026 for lstm_gbm) or the architectures differ.

    python ops/bench/train_torch.py --preset baseline_gbm --threads 2 --steps 20 --json
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

import torch
from torch import nn

N_FEATURES = 9
D_MODEL = 32
SEQ_LEN = 64
BATCH = 16
N_PATHS = 32
HORIZON = 288
MIN_SIGMA = 1e-3
DRIFT_SCALE = 0.02
MAX_LOG_MOVE = 3.0

PRESETS = {
    "baseline_gbm": ["TransformerBlock", "LSTMBlock"],
    "lstm_gbm": ["LSTMBlock"],
}


class Mha(nn.Module):
    """q, k, v, o projections (d x d with bias), scaled dot-product, no mask (as blocks/mod.rs)."""

    def __init__(self, d, heads):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.heads = heads

    def split(self, x):
        b, l, d = x.shape
        return x.reshape(b, l, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x):
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        a = torch.softmax(s, dim=-1) @ v
        b, h, l, dh = a.shape
        return self.o(a.transpose(1, 2).reshape(b, l, h * dh))


class TransformerBlock(nn.Module):
    """Pre-norm encoder layer: x + MHA(LN x), x + FF(LN x); FF = Linear(d, 2d), tanh-GELU
    (candle's `gelu`), Linear(2d, d); n_heads 4, ff_mult 2."""

    def __init__(self, d, n_heads=4, ff_mult=2):
        super().__init__()
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.attn = Mha(d, n_heads)
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.ff = nn.Sequential(
            nn.Linear(d, d * ff_mult), nn.GELU(approximate="tanh"), nn.Linear(d * ff_mult, d)
        )

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.ff(self.ln2(x))


class LSTMBlock(nn.Module):
    """LN(x + LSTM(x)), one layer, hidden = d (w_ih, w_hh, b_ih, b_hh as candle-nn's lstm)."""

    def __init__(self, d):
        super().__init__()
        self.lstm = nn.LSTM(d, d, num_layers=1, batch_first=True)
        self.ln = nn.LayerNorm(d, eps=1e-5)

    def forward(self, x):
        h, _ = self.lstm(x)
        return self.ln(x + h)


class GBMHead(nn.Module):
    """LN + Linear(d, 2) on the last step: mu * 0.02, sigma = softplus + 1e-3; i.i.d. normal
    per-step returns mu + sigma * eps."""

    def __init__(self, d):
        super().__init__()
        self.ln = nn.LayerNorm(d, eps=1e-5)
        self.out = nn.Linear(d, 2)

    def forward(self, h, n, horizon, gen):
        o = self.out(self.ln(h[:, -1, :]))
        mu = (o[:, 0:1] * DRIFT_SCALE).unsqueeze(2)
        sigma = (nn.functional.softplus(o[:, 1:2]) + MIN_SIGMA).unsqueeze(2)
        eps = torch.randn(h.shape[0], n, horizon, generator=gen, device=h.device)
        return eps * sigma + mu


class ZooModel(nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.input = nn.Linear(N_FEATURES, D_MODEL)
        layers = {"TransformerBlock": TransformerBlock, "LSTMBlock": LSTMBlock}
        self.blocks = nn.ModuleList(layers[b](D_MODEL) for b in blocks)
        self.norm = nn.LayerNorm(D_MODEL, eps=1e-5)
        self.head = GBMHead(D_MODEL)

    def sample(self, x, n, gen):
        h = self.input(x)
        for b in self.blocks:
            h = b(h)
        return self.head(self.norm(h), n, HORIZON, gen)


def batch_loss(model, x, y, n, gen):
    """Sample CRPS as workers/trainer/src/zoo/train.rs `batch_loss` + `sample_crps` (standard CRPS)."""
    inc = model.sample(x, n, gen)  # (b, n, h)
    h = inc.shape[2]
    scale = 1.0 / torch.arange(1, h + 1, dtype=torch.float32, device=inc.device).sqrt()
    samples = (inc.cumsum(2) * scale).transpose(1, 2)  # (b, h, n)
    target = y * scale
    abs_term = (samples - target.unsqueeze(2)).abs().mean(2)
    sorted_, _ = samples.sort(dim=2)
    i = torch.arange(n, dtype=torch.float32, device=inc.device)
    w = (2 * i - n + 1) / (n * n)
    spread = (sorted_ * w).sum(2)
    return (abs_term - spread).mean()


def simulate(model, x, spot, n, ret_std, gen):
    """1 window -> (n, horizon + 1) float64 prices, as `train::simulate`."""
    with torch.no_grad():
        inc = model.sample(x, n, gen)[0].double()  # (n, h)
        cum = (inc.cumsum(1) * ret_std).clamp(-MAX_LOG_MOVE, MAX_LOG_MOVE)
        zero = torch.zeros(n, 1, dtype=torch.float64, device=cum.device)
        paths = torch.cat([zero, cum], dim=1).exp() * spot
        return paths.cpu().numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="baseline_gbm")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("RAYON_NUM_THREADS", "0")))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (ops/bench/gpu-check.sh)")
    a = ap.parse_args()
    dev = torch.device(a.device)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
        torch.set_num_interop_threads(1)
    torch.manual_seed(42)
    gen = torch.Generator(device=dev).manual_seed(1)
    model = ZooModel(PRESETS[a.preset]).to(dev)
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    xs = torch.randn(BATCH, SEQ_LEN, N_FEATURES, generator=gen, device=dev)
    ys = torch.randn(BATCH, HORIZON, generator=gen, device=dev).cumsum(1)

    def step():
        loss = batch_loss(model, xs, ys, N_PATHS, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()  # waits for the device: each step is timed whole

    for _ in range(2):
        step()
    t0 = time.perf_counter()
    losses = [step() for _ in range(a.steps)]
    train_s = time.perf_counter() - t0
    if not all(math.isfinite(l) for l in losses):
        sys.exit(f"non-finite loss: {losses}")
    x1 = xs[:1]
    sims = []
    for _ in range(5):
        t0 = time.perf_counter()
        p = simulate(model, x1, 90000.0, 1000, 0.0015, gen)
        sims.append((time.perf_counter() - t0) * 1000.0)
        assert p.shape == (1000, HORIZON + 1), p.shape
    sims.sort()
    out = {
        "framework": "pytorch",
        "device": str(dev),
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "preset": a.preset,
        "param_count": params,
        "batch_size": BATCH,
        "n_paths": N_PATHS,
        "seq_len": SEQ_LEN,
        "horizon": HORIZON,
        "timed_steps": a.steps,
        "steps_per_s": a.steps / train_s,
        "simulate_1000x289_ms_median": statistics.median(sims),
        "simulate_1000x289_ms_min": sims[0],
    }
    if a.json:
        print(json.dumps(out))
    else:
        print(
            f"{a.preset} (torch {torch.__version__}, {out['threads']} threads, {params} params): "
            f"{out['steps_per_s']:.2f} steps/s, 1000x289 simulation "
            f"{out['simulate_1000x289_ms_median']:.1f} ms (median of 5)"
        )


if __name__ == "__main__":
    main()
