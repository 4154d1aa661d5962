"""Hyperparameters of a model, the optimiser settings, and the training settings a run stores."""
import math
from dataclasses import asdict, dataclass

# none; absolute: the reference's fixed sinusoidal table added to the embedding; learned: a trainable
# (T, E) table `pos_embedding` added instead; rotary: RoPE on each head's queries and keys (no table)
POS_ENCODINGS = ("none", "absolute", "learned", "rotary")
TOKENIZER_KINDS = ("ascii", "char", "byte", "bpe")  # text/: how text becomes token ids
SCHEDULES = ("linear", "cosine", "constant")  # learning rate after warm-up: from lr down to min_lr, or lr


def _real(lo, hi, hi_open=False, lo_open=False):
    def check(v):
        return (type(v) in (int, float) and math.isfinite(v) and (lo < v if lo_open else lo <= v)
                and (v < hi if hi_open else v <= hi))
    check.expected = f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    return check


def _whole(lo, hi):
    def check(v):
        return type(v) is int and lo <= v <= hi
    check.expected = f"an integer in {lo}..{hi}"
    return check


def _one_of(choices):
    def check(v):
        return v in choices
    check.expected = f"one of {', '.join(choices)}"
    return check


# The settings that decide what a training run computes, with their defaults and allowed values: `train`
# stores them in the model file (train_state["settings"]) and a later `train` without the flag uses
# the stored value, so a resume with no flags continues exactly. `train`'s flags have these names
# (underscores as dashes) and bounds.
TRAINING_SETTINGS = {
    "lr": (1e-3, _real(0.0, 10.0)),
    "min_lr": (1e-5, _real(0.0, 10.0)),
    "warmup": (100, _whole(0, 10**9)),
    "decay_steps": (50_000, _whole(1, 10**9)),
    "schedule": ("linear", _one_of(SCHEDULES)),
    "weight_decay": (0.01, _real(0.0, 10.0)),
    "beta1": (0.9, _real(0.0, 1.0, hi_open=True)),
    "beta2": (0.999, _real(0.0, 1.0, hi_open=True)),
    "eps": (1e-8, _real(0.0, 1.0, lo_open=True)),
    "grad_clip": (0.0, _real(0.0, 1e6)),
    "batch_size": (32, _whole(1, 2**40)),
    "units": (2, _whole(1, 64)),
    "grad_accum": (1, _whole(1, 1024)),
    "dropout": (0.0, _real(0.0, 1.0, hi_open=True)),
    "val_fraction": (0.0, _real(0.0, 1.0, hi_open=True)),
    "eval_every": (0, _whole(0, 10**9)),
}


def settings_as_flags(settings, names=None):
    """'--lr 0.0003 --batch-size 16': the settings `names` (default: all, in TRAINING_SETTINGS order) as
    train's flags."""
    names = [n for n in TRAINING_SETTINGS if n in settings] if names is None else names
    return " ".join(f"--{name.replace('_', '-')} {settings[name]:g}" if isinstance(settings[name], float)
                    else f"--{name.replace('_', '-')} {settings[name]}" for name in names)


@dataclass(frozen=True)
class Hyperparameters:
    vocab_size: int                 # V
    num_tokens: int = 80            # T, the context length
    embedding_degree: int = 80      # E (C in kernel code)
    num_layers: int = 4             # L
    num_heads: int = 4              # H (NH in kernel code)
    pos_enc: str = "absolute"       # one of POS_ENCODINGS
    head_size: int = None           # hs; None: embedding_degree // num_heads (E must divide by H then)

    def __post_init__(self):
        # the attention width D = H * hs may differ from E (insert-head grows D by one head, E stays):
        # qkv_{l} is (E, 3D), proj_{l}_weights (D, E); by default D = E, as in every model before
        if self.head_size is None and type(self.embedding_degree) is int and type(self.num_heads) is int \
                and self.num_heads > 0 and self.embedding_degree % self.num_heads == 0:
            object.__setattr__(self, "head_size", self.embedding_degree // self.num_heads)

    @property
    def attention_width(self):
        """D = num_heads * head_size: the width of each of Q, K, V and of the attention output."""
        return self.num_heads * self.head_size

    def validate(self):
        """Raise ValueError with one line naming the bad value."""
        for name in ("vocab_size", "num_tokens", "embedding_degree", "num_layers", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.head_size is None:
            raise ValueError(f"embedding_degree ({self.embedding_degree}) must be divisible by "
                             f"num_heads ({self.num_heads})")
        if not isinstance(self.head_size, int) or self.head_size < 1:
            raise ValueError(f"head_size must be a positive integer, got {self.head_size!r}")
        if self.pos_enc not in POS_ENCODINGS:
            raise ValueError(f"pos_enc must be one of {', '.join(POS_ENCODINGS)}, got {self.pos_enc!r}")
        if self.pos_enc == "rotary" and self.head_size % 2:
            raise ValueError(f"rotary positional encoding rotates pairs of dimensions and needs an even head "
                             f"size, got {self.head_size}")
        return self

    def num_params(self):
        V, E, L, D = self.vocab_size, self.embedding_degree, self.num_layers, self.attention_width
        learned = self.num_tokens * E if self.pos_enc == "learned" else 0  # the pos_embedding table
        # the reference's formula (12 E^2 per layer when D = E), plus the learned table
        return 2 * V * E + V + L * (4 * E * D + 8 * E * E + 10 * E) + 2 * E + learned

    def to_dict(self):
        return asdict(self)


@dataclass(frozen=True)
class OptimizerConfig:
    lr: float = 1e-3                # peak learning rate (reference base_lr)
    min_lr: float = 1e-5            # floor reached after warmup + decay_steps
    warmup: int = 100               # linear warmup from 0 over this many steps
    decay_steps: int = 50_000       # linear decay from lr to min_lr after warmup
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8               # added to sqrt(v_hat), outside the sqrt
    weight_decay: float = 0.01      # decoupled, applied to every parameter as in the reference
    schedule: str = "linear"        # after warm-up: "linear" (the reference) or "cosine" decay to min_lr, "constant"
    grad_clip: float = 0.0          # scale the gradient down to this global L2 norm when above it (0: off)

    def learning_rate(self, step):
        """The reference schedule at optimiser step `step` (0-based): lr(0) = 0 when warmup > 0."""
        if step < self.warmup:
            return self.lr / self.warmup * step
        if self.schedule == "constant":
            return self.lr
        if self.schedule == "cosine":
            progress = min(1.0, (step - self.warmup) / self.decay_steps)
            return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))
        return max(self.min_lr, self.lr - (self.lr - self.min_lr) * (step - self.warmup) / self.decay_steps)
