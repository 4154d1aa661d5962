"""PyTorch CPU reference trainer mirroring the femtoGPT (keyvank/femtoGPT) architecture.

Written from the architecture description (no code copied). Layer order as in femtoGPT's
gpt.rs (GPT::new):

  x = tok_emb[idx] + sinusoidal_pos            (pos encoding is fixed, not trained)
  per layer:
    n   = LN1(x)
    per head h: K_h = n@Wk_h, Q_h = n@Wq_h, V_h = n@Wv_h      (each W [d, d/heads], no bias)
                S = (K_h @ Q_h^T) * hs^-0.5, causal mask (keep j <= i), softmax over j,
                dropout, A_h = S @ V_h
    a   = concat_h(A_h) @ Wproj + bproj ; dropout
    x   = LN2(n + a)           # NB: femtoGPT's residual adds the *normalized* input
    x   = x + (GELU_tanh(x@W1 + b1) @ W2 + b2)
  logits = LN_f(x) @ Whead + bhead ; loss = mean cross-entropy over all B*T positions
  AdamW(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01) on all parameters.
  Init: every weight (incl. embeddings and LayerNorm gains) ~ N(0, 0.02); biases 0.

The per-head K/Q/V matrices are stored fused in one [d, 3d] parameter: columns
[h*hs:(h+1)*hs] of the K/Q/V thirds are head h's [d, hs] matrix (same parameter count and
math as femtoGPT's separate per-head tensors, one GEMM instead of 3*heads small ones).

Usage: python3 bench/torch_ref.py --config small --steps 10 --threads 2 [--sdpa] [--fused-adam] [--compile]
(`femtogpt bench --torch` runs it beside femtogpt). A standalone script: it needs `pip install torch==2.13.0`,
which is never a dependency of femtogpt or its tests.
Prints params, median s/step over the steps after --warmup (3) warm-up steps, tokens/s,
forward/backward/optimizer split, forward-only time for ONE sequence of num_tokens, and
peak RSS (getrusage ru_maxrss), then a final JSON line.
"""
import argparse
import json
import math
import os
import platform
import resource
import statistics
import sys
import time

CONFIGS = {  # name: (vocab, num_tokens(ctx), d, layers, heads)
    "tiny": (128, 64, 64, 4, 4),
    "small": (1054, 80, 192, 8, 8),
    "mid": (2176, 160, 162, 6, 6),
    "large": (1054, 80, 768, 8, 16),
}

ap = argparse.ArgumentParser()
ap.add_argument("--config", default="tiny", choices=sorted(CONFIGS))
ap.add_argument("--steps", type=int, default=10, help="timed steps (after warm-up)")
ap.add_argument("--warmup", type=int, default=3)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--batch", type=int, default=32)
ap.add_argument("--dropout", type=float, default=0.0, help="femtoGPT main.rs uses 0.0")
ap.add_argument("--sdpa", action="store_true", help="use F.scaled_dot_product_attention")
ap.add_argument("--fused-adam", action="store_true", help="torch.optim.AdamW(fused=True)")
ap.add_argument("--compile", action="store_true", help="train through torch.compile (inductor C++ kernels); warm-up includes compilation")
ap.add_argument("--infer-reps", type=int, default=20)
ap.add_argument("--seed", type=int, default=0)
args = ap.parse_args()

for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[k] = str(args.threads)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

torch.set_num_threads(args.threads)
torch.manual_seed(args.seed)


def rss_now_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def sinusoidal(T, d):
    # femtoGPT pos_encode_inter: col even -> sin(k / 10000^(2*(col//2)/d)), odd -> cos(...)
    k = torch.arange(T, dtype=torch.float32)[:, None]
    i = (torch.arange(d) // 2).to(torch.float32)[None, :]
    ang = k / torch.pow(10000.0, 2.0 * i / d)
    even = (torch.arange(d) % 2 == 0)[None, :]
    return torch.where(even, torch.sin(ang), torch.cos(ang))


class Block(nn.Module):
    def __init__(self, d, heads, ctx, dropout, sdpa):
        super().__init__()
        self.d, self.h, self.hs, self.sdpa = d, heads, d // heads, sdpa
        self.ln1 = nn.LayerNorm(d, eps=1e-5)
        self.wkqv = nn.Parameter(torch.empty(d, 3 * d))  # [K heads | Q heads | V heads], no bias
        self.proj = nn.Linear(d, d)
        self.drop = nn.Dropout(dropout)
        self.ln2 = nn.LayerNorm(d, eps=1e-5)
        self.ff1 = nn.Linear(d, 4 * d)
        self.ff2 = nn.Linear(4 * d, d)
        self.register_buffer("mask", torch.tril(torch.ones(ctx, ctx, dtype=torch.bool)), persistent=False)

    def forward(self, x):
        B, T, d = x.shape
        n = self.ln1(x)
        kqv = n @ self.wkqv  # [B, T, 3d]
        k, q, v = (t.view(B, T, self.h, self.hs).transpose(1, 2) for t in kqv.split(d, dim=-1))
        if self.sdpa:
            # femtoGPT scores row i with K_i.Q_j: same as SDPA with query:=K, key:=Q
            a = F.scaled_dot_product_attention(k, q, v, is_causal=True,
                                               dropout_p=self.drop.p if self.training else 0.0)
        else:
            s = (k @ q.transpose(-1, -2)) * (self.hs ** -0.5)
            s = s.masked_fill(~self.mask[:T, :T], float("-inf"))
            a = self.drop(torch.softmax(s, dim=-1)) @ v
        a = a.transpose(1, 2).reshape(B, T, d)
        x = self.ln2(n + self.drop(self.proj(a)))
        return x + self.ff2(F.gelu(self.ff1(x), approximate="tanh"))


class FemtoGPT(nn.Module):
    def __init__(self, vocab, ctx, d, layers, heads, dropout=0.0, sdpa=False):
        super().__init__()
        self.vocab = vocab
        self.tok = nn.Embedding(vocab, d)
        self.register_buffer("pos", sinusoidal(ctx, d), persistent=False)
        self.blocks = nn.ModuleList(Block(d, heads, ctx, dropout, sdpa) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d, eps=1e-5)
        self.head = nn.Linear(d, vocab)
        for name, p in self.named_parameters():
            if name.endswith(".bias"):
                nn.init.zeros_(p)
            else:
                nn.init.normal_(p, 0.0, 0.02)

    def forward(self, idx, targets=None):
        T = idx.shape[1]
        x = self.tok(idx) + self.pos[:T]
        for b in self.blocks:
            x = b(x)
        logits = self.head(self.ln_f(x))
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(-1, self.vocab), targets.reshape(-1))


def main():
    V, T, d, L, H = CONFIGS[args.config]
    B = args.batch
    rss_import = rss_now_mb()
    model = FemtoGPT(V, T, d, L, H, args.dropout, args.sdpa)
    n_params = sum(p.numel() for p in model.parameters())
    opt_kw = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    if args.fused_adam:
        opt_kw["fused"] = True
    opt = torch.optim.AdamW(model.parameters(), **opt_kw)
    train_model = torch.compile(model) if args.compile else model
    g = torch.Generator().manual_seed(args.seed)
    print(f"config={args.config} vocab={V} ctx={T} d={d} layers={L} heads={H} batch={B} "
          f"params={n_params} threads={torch.get_num_threads()} torch={torch.__version__} "
          f"sdpa={args.sdpa} fused_adam={args.fused_adam} python={platform.python_version()}", flush=True)
    model.train()
    steps, fwd, bwd, ost, losses = [], [], [], [], []
    for i in range(args.warmup + args.steps):
        x = torch.randint(V, (B, T), generator=g)
        y = torch.randint(V, (B, T), generator=g)
        t0 = time.perf_counter()
        _, loss = train_model(x, y)
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        losses.append(loss.item())
        if i >= args.warmup:
            steps.append(t3 - t0); fwd.append(t1 - t0); bwd.append(t2 - t1); ost.append(t3 - t2)
        print(f"step {i+1}{' (warm-up)' if i < args.warmup else ''}: {t3-t0:.4f}s "
              f"(fwd {t1-t0:.4f} bwd {t2-t1:.4f} opt {t3-t2:.4f}) loss {losses[-1]:.4f}", flush=True)
    peak_train = peak_rss_mb()
    med = statistics.median(steps)
    # forward-only (inference) of ONE sequence of T tokens, all T positions' logits
    model.eval()
    inf = []
    with torch.inference_mode():
        x1 = torch.randint(V, (1, T), generator=g)
        for _ in range(3):
            model(x1)
        for _ in range(args.infer_reps):
            t0 = time.perf_counter()
            model(x1)
            inf.append(time.perf_counter() - t0)
    res = dict(
        config=args.config, params=n_params, threads=args.threads, batch=B, ctx=T,
        sdpa=args.sdpa, fused_adam=args.fused_adam, compile=args.compile,
        step_s_median=med, step_s_min=min(steps), step_s_max=max(steps),
        tokens_per_s=B * T / med,
        fwd_s_median=statistics.median(fwd), bwd_s_median=statistics.median(bwd),
        opt_s_median=statistics.median(ost),
        infer_1seq_ms_median=1000 * statistics.median(inf), infer_1seq_ms_min=1000 * min(inf),
        rss_after_import_mb=rss_import, peak_rss_train_mb=peak_train, peak_rss_mb=peak_rss_mb(),
        first_loss=losses[0], last_loss=losses[-1], expected_initial_loss=math.log(V),
    )
    print(f"RESULT {args.config} t={args.threads}: params={n_params} median_step={med:.4f}s "
          f"[{min(steps):.4f}..{max(steps):.4f}] tok/s={B*T/med:.0f} "
          f"fwd={res['fwd_s_median']:.4f} bwd={res['bwd_s_median']:.4f} opt={res['opt_s_median']:.4f} "
          f"infer1={res['infer_1seq_ms_median']:.2f}ms peakRSS={res['peak_rss_mb']:.0f}MB")
    print("JSON " + json.dumps(res), flush=True)


if __name__ == "__main__":
    sys.exit(main())
