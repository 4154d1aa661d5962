"""A model file in memory: the network, its optimiser state, tokenizer, logs and resume state.

`Checkpoint` is what the commands work on: `assemble` is the one place one is put together (create,
from_model_file, fork import and layer insertion all call it), `create` builds a fresh one (the
reference init), `load` reads and validates a model file (then checks that the model fits in memory and
that its tokenizer has vocab_size tokens, before anything is built), `save` writes it atomically.
Conversions between the file's reference-named tensors and the engine's flat buffers happen here and
nowhere else.
"""
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from femtogpt.atomic import remove_temp_files
from femtogpt.io.lock import holds as holds_lock
from femtogpt.io.logs import INIT, RESET_OPTIMIZER, new_log
from femtogpt.io.model_file import ModelFile, ModelFileError, load_model_bytes, load_model_file, save_model_file
from femtogpt.config import Hyperparameters, OptimizerConfig
from femtogpt.model.gpt import GPT
from femtogpt.engine.optim import AdamW
from femtogpt.engine.params import Parameters, named_views
from femtogpt.model.memory import ModelTooLarge, check_fits, model_bytes
from femtogpt.text.tokenizer import TextTokenizer, TokenizerError


@dataclass
class Checkpoint:
    hp: Hyperparameters
    model: GPT
    tokenizer: TextTokenizer
    logs: list
    train_state: dict = field(default_factory=dict)
    optimizer: AdamW | None = None  # None: the file holds no optimiser state (fresh, or reset)

    @property
    def step(self):
        return self.optimizer.step if self.optimizer is not None else 0

    @property
    def seed(self):
        return int(self.train_state.get("seed", 0))

    def ensure_optimizer(self, config=None):
        """The optimiser, created with zero moments at step 0 if the file had none."""
        if self.optimizer is None:
            self.optimizer = AdamW(self.model.params, config or OptimizerConfig())
        elif config is not None:
            self.optimizer.config = config
        return self.optimizer

    def reset_optimizer(self):
        self.optimizer = None
        self.logs.append(new_log(RESET_OPTIMIZER))

    def to_model_file(self):
        hp = self.hp
        tensors = {name: np.ascontiguousarray(v) for name, v in self.model.params.named().items()}
        optimizer = None
        if self.optimizer is not None:
            optimizer = {
                "step": int(self.optimizer.step),
                "m": {n: np.ascontiguousarray(v) for n, v in named_views(hp, self.optimizer.m).items()},
                "v": {n: np.ascontiguousarray(v) for n, v in named_views(hp, self.optimizer.v).items()},
            }
        return ModelFile(hp=hp, tokenizer=self.tokenizer.to_json(), tokenizer_meta=self.tokenizer.meta(),
                         tensors=tensors, optimizer=optimizer, logs=self.logs,
                         train_state=dict(self.train_state))

    def save(self, path):
        """Write the model file atomically. Under this process's writer's lock of `path` (io/lock.py),
        first delete the temp files that killed saves of it left: no other writer can be mid-save."""
        if holds_lock(path):
            remove_temp_files(path)
        save_model_file(Path(path), self.to_model_file())


def assemble(hp, params, tokenizer, logs, train_state, optimizer=None, optimizer_config=None):
    """The one place a Checkpoint is put together: the GPT over `params`, and an AdamW when `optimizer`
    ({"step": int, "m": {name: array}, "v": {name: array}}, the ModelFile form) is given; a moment
    missing from "m" or "v" starts at zero (e.g. a newly inserted layer's)."""
    checkpoint = Checkpoint(hp=hp, model=GPT(hp, params), tokenizer=tokenizer, logs=list(logs),
                            train_state=dict(train_state or {}))
    if optimizer is not None:
        opt = AdamW(params, optimizer_config or OptimizerConfig(), step=optimizer["step"])
        for key in ("m", "v"):
            moments = optimizer[key]
            for name, view in named_views(hp, getattr(opt, key)).items():
                if name in moments:
                    view[...] = moments[name]
        checkpoint.optimizer = opt
    return checkpoint


def create(hp, tokenizer, seed=None):
    """A freshly initialised model (the reference init) with an Init log; seed None draws one."""
    seed = secrets.randbits(32) if seed is None else int(seed)
    params = Parameters(hp).init_reference(seed)
    return assemble(hp, params, tokenizer, [new_log(INIT, hyperparameters=hp.to_dict(), seed=seed)], {"seed": seed})


def build_bytes(hp, optimizer=True):
    """Bytes that building a Checkpoint of hp allocates, and generating from it: the parameters and their
    gradients, AdamW's moments, the position table (with its float temporaries) and a KV cache."""
    TE = hp.num_tokens * hp.embedding_degree
    table = 5 * TE * 4 if hp.pos_enc == "absolute" else 0
    return (model_bytes(hp, optimizer=optimizer) + model_bytes(hp, optimizer=False) + table
            + 2 * hp.num_layers * hp.num_tokens * hp.attention_width * 4)


def model_tokenizer(mf):
    """The tokenizer a validated ModelFile stores (the one the loader built while checking it, else
    rebuilt); it must have exactly vocab_size tokens (the embedding's rows). Any problem is a one-line
    ModelFileError naming the file."""
    if mf.checked_tokenizer is not None:
        return mf.checked_tokenizer
    try:
        return TextTokenizer.from_json(mf.tokenizer, mf.tokenizer_meta, vocab_size=mf.hp.vocab_size)
    except TokenizerError as e:
        raise ModelFileError(f"{mf.source or 'the model file'}: {e}") from None


def from_model_file(mf):
    """A Checkpoint from a validated ModelFile (tensors copied into the flat buffers), after checking
    that it fits in memory and that its tokenizer matches vocab_size (ModelFileError, one line)."""
    try:
        check_fits(build_bytes(mf.hp, mf.optimizer is not None))
    except ModelTooLarge as e:
        raise ModelFileError(f"{mf.source or 'the model file'}: {e}") from None
    tokenizer = model_tokenizer(mf)
    params = Parameters(mf.hp).load(mf.tensors)
    return assemble(mf.hp, params, tokenizer, mf.logs, mf.train_state, mf.optimizer)


def load(path, data=None):
    """Read and validate a model file and build its Checkpoint; any defect is one ModelFileError line.
    data: the file's bytes, already read (e.g. received from another process); `path` names them."""
    if data is None:
        return from_model_file(load_model_file(Path(path)))
    return from_model_file(load_model_bytes(data, Path(path)))
