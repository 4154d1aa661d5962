"""The Python API, for notebooks and scripts: what the CLI does, without a terminal.

    import femtogpt
    model = femtogpt.init(num_tokens=64, embedding_degree=64, num_layers=4, num_heads=4, seed=1)
    model.train("dataset.txt", steps=200, lr=3e-3, batch_size=16)   # returns a TrainResult
    print(model.generate("ba", count=40, seed=1))
    print(model.eval("dataset.txt"))                                   # {"loss", "perplexity", "tokens"}
    model.save("model.dat")
    model = femtogpt.load("model.dat")                                 # and train on: same bits

`femtogpt.load` and `femtogpt.init` are this module's `load` and `init` (the package imports it on
first use). Training takes the same settings as `femtogpt train` (config.TRAINING_SETTINGS) as keyword
arguments and stores them in the model like the CLI does, so a later `train` (here or on the command
line) without them continues exactly. Every call runs inside engine_threads (engine/runtime.py) and
gives the process's thread settings back when it returns.
"""
import math
from pathlib import Path

from femtogpt.config import POS_ENCODINGS, TRAINING_SETTINGS, Hyperparameters
from femtogpt.engine.runtime import engine_threads
from femtogpt.train.progress import SilentDisplay


class Model:
    """A model in memory (an io/checkpoint.Checkpoint: weights, optimizer, tokenizer, history) and
    the file it came from or was last saved to (`path`, or None)."""

    def __init__(self, checkpoint, path=None):
        self.checkpoint, self.path = checkpoint, None if path is None else Path(path)

    @property
    def hp(self):
        return self.checkpoint.hp

    @property
    def step(self):
        """Optimizer steps done."""
        return self.checkpoint.step

    @property
    def tokenizer(self):
        return self.checkpoint.tokenizer

    @property
    def settings(self):
        """The training settings stored by the last `train` (empty before the first)."""
        return dict(self.checkpoint.train_state.get("settings", {}))

    def __repr__(self):
        hp = self.hp
        return (f"<femtogpt.Model {hp.num_params():,} parameters, T {hp.num_tokens}, E {hp.embedding_degree}, "
                f"L {hp.num_layers}, H {hp.num_heads}, step {self.step}>")

    def train(self, dataset, steps, *, seed=None, threads=None, on_step=None, save_every=0, **settings):
        """Train for `steps` steps on a text file or a directory of text files; returns the loop's
        TrainResult (last_loss, steps, failure, ...).

        settings: any of config.TRAINING_SETTINGS (lr=3e-4, batch_size=16, units=2, dropout=0.1,
        schedule="cosine", grad_clip=1.0, ...); the ones not given are the model's stored settings,
        else the defaults (min_lr above lr: ValueError when min_lr is given, else lowered to lr, as
        the CLI does). seed: batches and dropout (default: the model's). on_step(step, loss, lr,
        seconds) after every step. save_every: with a `path`, save there every N steps (0: never
        during training; call save()). A NaN stops the run before the bad update (result.failure).
        """
        from femtogpt.text.fingerprint import dataset_fingerprint
        from femtogpt.text.token_cache import encode_file_cached
        from femtogpt.train.loop import run_training
        from femtogpt.train.settings import optimizer_config, settings_for_run, train_options

        _check_settings(settings)
        chosen, _, _ = settings_for_run(settings, self.checkpoint.train_state.get("settings", {}))
        ckpt = self.checkpoint
        tokens = encode_file_cached(ckpt.tokenizer, dataset)
        ckpt.ensure_optimizer(optimizer_config(chosen))
        ckpt.train_state["settings"] = chosen
        options = train_options(chosen, steps, ckpt.seed if seed is None else seed,
                                save_every=save_every if self.path else 0, save_minutes=0.0)
        info = {"dataset": str(dataset), "dataset_hash": dataset_fingerprint(dataset)}
        save = (lambda: ckpt.save(self.path)) if self.path is not None and save_every else (lambda: None)
        with engine_threads(threads):
            return run_training(ckpt, tokens, options, save, _Callback(on_step), dataset_info=info)

    def generate(self, prompt="", count=100, *, temperature=0.8, top_k=0, top_p=1.0, seed=None, threads=None):
        """`count` tokens sampled after `prompt` (empty: after a newline), as text."""
        from femtogpt.model.generate import empty_prompt_start, generate

        ids = [int(i) for i in self.tokenizer.encode(prompt)]
        with engine_threads(threads):
            out = generate(self.checkpoint.model, ids, count, temperature=temperature, top_k=top_k, top_p=top_p,
                           seed=seed, start_id=0 if ids else empty_prompt_start(self.tokenizer))
        return self.tokenizer.decode(out)

    def eval(self, dataset, *, max_windows=None, batch_size=32, threads=None):
        """{"loss", "perplexity", "tokens"}: the mean cross-entropy over a text file (or directory) in
        consecutive windows covering it once (the first `max_windows` windows only, if given)."""
        from femtogpt.text.token_cache import encode_file_cached
        from femtogpt.train.evaluate import evaluate_tokens

        tokens = encode_file_cached(self.tokenizer, dataset)
        with engine_threads(threads):
            loss, count = evaluate_tokens(self.checkpoint.model, tokens, batch_size=batch_size,
                                          max_windows=max_windows)
        return {"loss": loss, "perplexity": math.exp(min(loss, 709.0)), "tokens": int(count)}

    def trace(self, text, *, attention=False, threads=None):
        """One forward over `text` (its last num_tokens tokens), no dropout: a model/trace.py Trace
        with per layer the residual stream (resid: (L + 1, 1, T, C)), the normed inputs, the attention
        and feed-forward outputs, and with `attention` the attention maps (probs: (L, 1, H, T, T));
        `tokens` holds the token strings of the positions."""
        import numpy as np

        ids = [int(i) for i in self.tokenizer.encode(text)][-self.hp.num_tokens:]
        if not ids:
            raise ValueError("trace() needs a text of at least one token")
        with engine_threads(threads):
            result = self.checkpoint.model.forward_trace(np.asarray([ids]), attention=attention)
        result.tokens = [self.tokenizer.decode([i]) for i in ids]
        return result

    def save(self, path=None):
        """Write the model file atomically to `path` (default: where it was loaded from or last saved)."""
        if path is None and self.path is None:
            raise ValueError("save() needs a path: this model was not loaded from a file")
        self.path = Path(path) if path is not None else self.path
        self.checkpoint.save(self.path)
        return self.path


def load(path):
    """The model in a femtogpt model file (or one of the Rust fork's .dat files)."""
    from femtogpt.io.checkpoint import from_model_file
    from femtogpt.io.fork_convert import model_file_or_fork

    return Model(from_model_file(model_file_or_fork(path)), path)


def init(tokenizer="ascii", *, tokenizer_data=None, num_tokens=64, embedding_degree=64, num_layers=4, num_heads=4,
         positional_encoding="absolute", seed=None):
    """A new model with the reference's random init. tokenizer: ascii, char (tokenizer_data: a corpus),
    byte or bpe (tokenizer_data: a tokenizer JSON; default: the packaged one)."""
    from femtogpt.io.checkpoint import create
    from femtogpt.text.build import build_tokenizer

    if positional_encoding not in POS_ENCODINGS:
        raise ValueError(f"positional_encoding must be one of {', '.join(POS_ENCODINGS)}")
    tok = build_tokenizer(tokenizer, tokenizer_data)
    hp = Hyperparameters(vocab_size=tok.vocab_size, num_tokens=num_tokens, embedding_degree=embedding_degree,
                         num_layers=num_layers, num_heads=num_heads, pos_enc=positional_encoding).validate()
    return Model(create(hp, tok, seed))


def _check_settings(settings):
    for name, value in settings.items():
        if name not in TRAINING_SETTINGS:
            raise TypeError(f"train() got an unknown setting {name!r} (settings: {', '.join(TRAINING_SETTINGS)})")
        check = TRAINING_SETTINGS[name][1]
        if not check(value):
            raise ValueError(f"{name}={value!r}: expected {check.expected}")


class _Callback(SilentDisplay):
    """The loop's display (train/progress.py) for code: on_step(step, loss, lr, seconds) after each step."""

    def __init__(self, on_step):
        self.on_step = on_step

    def step(self, step, loss, lr, seconds):
        if self.on_step is not None:
            self.on_step(step, loss, lr, seconds)
