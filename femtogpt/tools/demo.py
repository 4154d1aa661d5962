"""The first-run demo as a library function: toy data, a small model, a timed training run, samples.

`run_demo` writes DIR/dataset.txt (simple_dummy words) and trains a fresh E64 L4 H4 model on it for
about `seconds`, saving it through `save`; `say` receives the lines a user reads. The CLI's `demo`
checks the paths, takes the lock and prints; here is only what the demo does.
"""
import time
from dataclasses import dataclass

from femtogpt.atomic import write_atomically
from femtogpt.config import Hyperparameters
from femtogpt.io.checkpoint import create
from femtogpt.model.generate import sample_text
from femtogpt.tasks.toy_data import generate_text
from femtogpt.text.build import build_tokenizer
from femtogpt.train.loop import TrainOptions, run_training

DEMO_SHAPE = dict(num_tokens=32, embedding_degree=64, num_layers=4, num_heads=4, pos_enc="none")


@dataclass
class DemoResult:
    checkpoint: object        # the trained io.checkpoint.Checkpoint
    result: object            # train.loop.TrainResult, None when Ctrl-C cut the run short
    samples: list             # three sampled lines (prompt: a newline)


def run_demo(dataset, model_name, seed, seconds, save, display, say, before_training=lambda: None):
    """Write the toy dataset to `dataset`, init, train for `seconds` (Ctrl-C stops early and saves),
    sample. save(checkpoint) writes the model (`model_name` is how `say` names it); display: a
    train.progress display."""
    text = generate_text("simple_dummy", None, seed) + "\n"
    write_atomically(dataset, text)
    say(f"1/3 Wrote {dataset} ({len(text):,} characters of toy words: consonant/vowel, 4 or 6 letters).")
    tok = build_tokenizer("ascii")
    hp = Hyperparameters(vocab_size=tok.vocab_size, **DEMO_SHAPE)
    ckpt = create(hp, tok, seed)
    say(f"2/3 Initialised {model_name}: {hp.num_params():,} parameters (E64 L4 H4, context 32).")
    tokens = tok.encode(text)
    before_training()
    say(f"3/3 Training for {seconds:.0f} s (Ctrl-C to stop early)...")
    deadline = time.perf_counter() + seconds
    options = TrainOptions(steps=1_000_000, seed=seed, save_every=0)  # the deadline ends it
    try:
        result = run_training(ckpt, tokens, options, lambda: save(ckpt), display,
                              should_stop=lambda: time.perf_counter() > deadline,
                              dataset_info={"dataset": str(dataset)})
    except KeyboardInterrupt:
        save(ckpt)
        result = None
    samples = [sample_text(ckpt.model, tok, 40, temperature=0.8, seed=seed + k).replace("\n", " ")
               for k in range(3)]
    return DemoResult(ckpt, result, samples)
