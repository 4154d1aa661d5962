"""The GPT defined once: `network` (embedding, input norm, the layers) and `block` (one layer).

The reference architecture (§2.2), per layer l, from N_0 = LN_0(X_0), X_0 = token embedding (+ the
fixed position table):
    O       = causal attention over the heads of N_l @ qkv_l (dropout on the probabilities)
    M       = LN(N_l + dropout(O @ proj_w + proj_b))    the residual starts from the normalised input
    F       = gelu(M @ ff1_w + ff1_b) @ ff2_w + ff2_b
    X_{l+1} = M + F,  N_{l+1} = LN_{l+1}(X_{l+1})       after the last layer: the head norm
    logits  = N_L @ head_map_weights + head_map_bias
Biases are fused into the kernel after each GEMM, and X_{l+1} = M + F goes straight into the next
LayerNorm, so one fused residual LayerNorm closes each half-layer and `block` maps N_l to N_{l+1}.

Both are written against a runner, which supplies the ops and the parameters:
    run.P[name]                                  a parameter by its internal name (engine/params.py)
    run.embed(ids), run.layernorm(x, g, b)       X_0 and N_0
    run.matmul(site, l, x, w)                    x @ w
    run.attention(l, qkv, drop)                  causal multi-head attention of a (rows, 3D) [Q | K | V], D = H*hs
    run.rows(l, x)                               x's rows that attention returned (see below)
    run.residual_norm(site, l, a, b, bias, g, beta, drop=None)   LN(a + dropout(b + bias))
    run.gelu(l, h, bias)                         gelu(h + bias)
`site` names the op's place in the layer (its Function on the tape); `drop` numbers a dropout site
of the layer (masks keyed by (step key, l, drop)); None means none there.
Runners: the tape (model/tape.py: the whole batch on the autograd Graph, one Function per site and
layer; model/trace.py records hidden states on it) and the KV cache (model/kv_cache.py: forward
only, a sequence's new positions against its cached keys and values, where the last layer runs only
the newest row, hence `rows`). The head is applied by the callers: fused with the loss when training.
"""


def network(run, ids, L):
    """N_L = LN_head(X_L), the head's input (rows, C), for token ids."""
    P = run.P
    x = run.embed(ids)                                           # X_0: (rows, C)
    n = run.layernorm(x, P["norm_0_coeff"], P["norm_0_bias"])    # N_0 = LN_0(X_0)
    for l in range(L):
        n = block(run, l, n, f"norm_{l + 1}" if l + 1 < L else "head_norm")
    return n


def block(run, l, n, next_norm):
    """Layer l: N_l (rows, C) -> N_{l+1} = LN(X_{l+1}), with the LayerNorm `next_norm` (a name)."""
    P = run.P
    qkv = run.matmul("qkv", l, n, P[f"qkv_{l}"])                  # (rows, 3D): [Q | K | V], head h at h*hs
    o = run.attention(l, qkv, drop=0)                             # (rows, D): softmax(Q K^T / sqrt(hs)) V
    n = run.rows(l, n)                                            # the rows o has (all, unless a KV cache)
    a = run.matmul("proj", l, o, P[f"proj_{l}_weights"])          # (rows, C); D = H*hs, C unless grown
    # m = LN(n + attn(n)), attn(n) = dropout(a + proj_b)
    m = run.residual_norm("res_attn", l, n, a, P[f"proj_{l}_bias"],
                          P[f"atten_norm_{l}_coeff"], P[f"atten_norm_{l}_bias"], drop=1)
    u = run.matmul("ff1", l, m, P[f"feedforward1_{l}_weights"])   # (rows, 4C)
    h = run.gelu(l, u, P[f"feedforward1_{l}_bias"])               # gelu(m @ ff1_w + ff1_b)
    f = run.matmul("ff2", l, h, P[f"feedforward2_{l}_weights"])   # (rows, C)
    # x' = m + ffn(m), ffn(m) = f + ff2_b; returns N_{l+1} = LN_next(x')
    return run.residual_norm("res_ffn", l, m, f, P[f"feedforward2_{l}_bias"],
                             P[f"{next_norm}_coeff"], P[f"{next_norm}_bias"])
