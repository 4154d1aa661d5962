"""Small models for tests: the reference init rescaled so outputs and gradients are not all ~0
(gains N(0, 0.02) make every logit and gradient tiny, and a check against them proves little)."""
import numpy as np

from femtogpt.config import Hyperparameters
from femtogpt.model.gpt import GPT
from femtogpt.engine.params import Parameters


def spread_weights(params, seed):
    """Rescale the reference init in place: LayerNorm gains 1 + N(0, 0.3), biases N(0, 0.1), weights x20."""
    rng = np.random.default_rng(seed)
    for name, view in params.named().items():
        if name.endswith("_coeff"):
            view[...] = 1.0 + 0.3 * rng.standard_normal(view.shape)
        elif name.endswith("_bias"):
            view[...] = 0.1 * rng.standard_normal(view.shape)
        else:
            view *= 20.0


def make_test_model(dtype=np.float64, seed=0, **kw):
    hp = Hyperparameters(**{"vocab_size": 11, "num_tokens": 4, "embedding_degree": 8,
                            "num_layers": 1, "num_heads": 2, "pos_enc": "none", **kw})
    model = GPT(hp, Parameters(hp, dtype).init_reference(seed))
    spread_weights(model.params, seed)
    return model


def train_steps(session, text, steps, seed=0, batch_size=4):
    """`steps` seeded AdamW steps (lr 1e-2, no warm-up) of a Checkpoint on `text`, batches drawn from
    (seed, optimizer step) as `train` draws them, so the weights move and the moments are nonzero."""
    from femtogpt.config import OptimizerConfig
    from femtogpt.train.step import sample_batch, train_step

    opt = session.ensure_optimizer(OptimizerConfig(lr=1e-2, warmup=0))
    ids = session.tokenizer.encode(text)
    for _ in range(steps):
        x, y = sample_batch(ids, batch_size, session.hp.num_tokens, seed, opt.step)
        train_step(session.model, opt, x, y)
    return session
