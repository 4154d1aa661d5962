"""Hyperparameters of a model and the optimiser settings, with the reference's defaults."""
from dataclasses import asdict, dataclass

POS_ENCODINGS = ("none", "absolute")
TOKENIZER_KINDS = ("ascii", "char", "byte", "bpe")  # text/: how text becomes token ids


@dataclass(frozen=True)
class Hyperparameters:
    vocab_size: int                 # V
    num_tokens: int = 80            # T, the context length
    embedding_degree: int = 80      # E (C in kernel code)
    num_layers: int = 4             # L
    num_heads: int = 4              # H (NH in kernel code)
    pos_enc: str = "absolute"       # "none" or "absolute" (fixed sinusoidal table)

    @property
    def head_size(self):
        return self.embedding_degree // self.num_heads

    def validate(self):
        """Raise ValueError with one line naming the bad value."""
        for name in ("vocab_size", "num_tokens", "embedding_degree", "num_layers", "num_heads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.embedding_degree % self.num_heads:
            raise ValueError(f"embedding_degree ({self.embedding_degree}) must be divisible by "
                             f"num_heads ({self.num_heads})")
        if self.pos_enc not in POS_ENCODINGS:
            raise ValueError(f"pos_enc must be one of {', '.join(POS_ENCODINGS)}, got {self.pos_enc!r}")
        return self

    def num_params(self):
        V, E, L = self.vocab_size, self.embedding_degree, self.num_layers
        return 2 * V * E + V + L * (12 * E * E + 10 * E) + 2 * E  # the reference's formula

    def to_dict(self):
        return {**asdict(self), "head_size": self.head_size}


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

    def learning_rate(self, step):
        """The reference schedule at optimiser step `step` (0-based): lr(0) = 0 when warmup > 0."""
        if step < self.warmup:
            return self.lr / self.warmup * step
        return max(self.min_lr, self.lr - (self.lr - self.min_lr) * (step - self.warmup) / self.decay_steps)
