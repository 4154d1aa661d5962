"""Growing a model stage by stage: the fork's incremental-training.py and train.py (reference §10),
used for its runs #44-#49. Train S steps at L layers, save a numbered checkpoint, insert a layer, and
so on up to N layers; then S steps more at N layers.

The model file M is the working file: each stage trains it in place with train/loop.py (the seeded
batches, stored settings, saves and logs of `femtogpt train`), the stage's end is saved again as its
checkpoint, NAME.l{L}.dat beside M (NAME: M's file name less a final .dat), and the new layer goes
into M (growth/surgery.py insert_layer, the optimizer's moments kept, so the step goes on). M
always holds the latest state; NAME.l{L}.dat holds M as it was after its S steps at L layers (the
last one equals M at the end).

Resuming. The plan (GrowPlan: the step and depth it started from, S, where and how layers go in, the
seed) is stored in M's train_state["grow"] with M's first save. Then M's depth and optimizer step say
where the growth is: stage L ends at step start + (L - L0 + 1) * S. Below that, stage L trains on;
at it, the checkpoint is (re)written and the next layer inserted. Every random draw is keyed by
(seed, step) (batches, dropout) or (seed, depth) (a new layer), so a growth interrupted anywhere (a
Ctrl-C, a kill) and run again ends with the same weights, bitwise, as one that ran in one go.

Not here: flags, printing and Ctrl-C (cli/pipeline.py); the surgery itself (growth/surgery.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from femtogpt.growth.surgery import INITS, insert_layer
from femtogpt.io.lock import model_lock
from femtogpt.io.logs import TRAIN_STEP, expanded, last_log_id
from femtogpt.io.model_file import ModelFileError, peek_header
from femtogpt.train.loop import run_training, split_tokens
from femtogpt.train.progress import SilentDisplay
from femtogpt.model.memory import ModelTooLarge, check_fits, training_bytes
from femtogpt.train.settings import batch_shape, optimizer_config, settings_for_run, train_options

PLAN_KEY = "grow"          # train_state[PLAN_KEY]: the plan of the growth M is in
WHERE = ("end", "mid")     # end: append (incremental-training.py); mid: at L // 2, between the halves
_SEED_LIMIT = 2**63


class GrowError(ValueError):
    """A growth that cannot go ahead as asked; str() is one line."""


@dataclass(frozen=True)
class GrowPlan:
    start_step: int          # the optimizer step M was at when the growth began
    start_layers: int        # L0, M's depth then
    to_layers: int           # N
    steps_per_stage: int     # S
    insert_at: str = "end"   # WHERE
    init: str = "near-identity"  # surgery.INITS
    seed: int = 0            # batches and dropout (as train's --seed), and each new layer's draw

    def stage_end(self, layers):
        """The optimizer step at which the stage at `layers` layers has had its S steps."""
        return self.start_step + (layers - self.start_layers + 1) * self.steps_per_stage

    def insert_index(self, layers):
        """Where the new layer goes into a model of `layers` layers."""
        return layers if self.insert_at == "end" else layers // 2

    def insert_seed(self, new_layers):
        """The seed of the draw of the layer that makes the model `new_layers` deep."""
        return (self.seed * 0x9E3779B1 + new_layers) % _SEED_LIMIT

    def same_schedule(self, other):
        """Do two plans grow the same way (all but to_layers equal)?"""
        return replace(self, to_layers=0) == replace(other, to_layers=0)

    def to_dict(self):
        return {"start_step": self.start_step, "start_layers": self.start_layers, "to_layers": self.to_layers,
                "steps_per_stage": self.steps_per_stage, "insert_at": self.insert_at, "init": self.init,
                "seed": self.seed}

    @classmethod
    def from_dict(cls, d, where="the model file"):
        """The plan stored in a model file, checked field by field (GrowError, one line)."""
        def bad(what):
            return GrowError(f"{where}: its growth record (train_state.grow) {what}; pass --restart to "
                             f"start a new growth from the model as it is")

        if not isinstance(d, dict):
            raise bad("is not a map")
        ints = {"start_step": 0, "start_layers": 1, "to_layers": 1, "steps_per_stage": 1, "seed": 0}
        for name, low in ints.items():
            value = d.get(name)
            if type(value) is not int or not low <= value < _SEED_LIMIT:
                raise bad(f"has {name} {value!r}, expected an integer from {low}")
        if d.get("insert_at") not in WHERE:
            raise bad(f"has insert_at {d.get('insert_at')!r}, expected one of {', '.join(WHERE)}")
        if d.get("init") not in INITS:
            raise bad(f"has init {d.get('init')!r}, expected one of {', '.join(INITS)}")
        return cls(**{name: d[name] for name in (*ints, "insert_at", "init")})

    def as_flags(self):
        return (f"--to-layers {self.to_layers} --steps-per-stage {self.steps_per_stage} --insert-at "
                f"{self.insert_at} --init {self.init} --seed {self.seed}")


def stage_path(model_path, layers):
    """The checkpoint of the stage at `layers` layers: NAME.l{layers}.dat beside the model file."""
    path = Path(model_path)
    stem = path.name[:-4] if path.name.endswith(".dat") and len(path.name) > 4 else path.name
    return path.with_name(f"{stem}.l{layers}.dat")


@dataclass
class Position:
    """Where a growth stands: M's depth and step, and where its stage starts and ends."""
    layers: int
    step: int
    stage_start: int
    stage_end: int
    resumed: bool            # the plan was read from the file (an unfinished growth, or a finished one again)

    @property
    def done_in_stage(self):
        return self.step - self.stage_start


def plan_growth(checkpoint, to_layers, steps_per_stage, insert_at="end", init="near-identity", seed=None,
                restart=False, where="the model"):
    """(GrowPlan, Position) for growing `checkpoint` (M) as asked: the plan stored in M when it grows the
    same way (S, insert_at, init and seed; seed None: the stored one), with to_layers as asked now, so
    a growth resumes or is extended; else a new plan from M as it is. GrowError (one line, `where`
    names M) when M has a growth half done another way, or when there is no layer to add."""
    if insert_at not in WHERE:
        raise GrowError(f"insert_at must be one of {', '.join(WHERE)}, got {insert_at!r}")
    if init not in INITS:
        raise GrowError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if type(steps_per_stage) is not int or steps_per_stage < 1:
        raise GrowError(f"--steps-per-stage {steps_per_stage}: at least 1 step per stage")
    if type(to_layers) is not int or to_layers < 1:
        raise GrowError(f"--to-layers {to_layers}: a model has at least 1 layer")
    L, step = checkpoint.hp.num_layers, checkpoint.step
    stored = checkpoint.train_state.get(PLAN_KEY)
    if stored is not None and not restart:
        old = GrowPlan.from_dict(stored, where)
        start = old.stage_end(L) - old.steps_per_stage
        if not (old.start_layers <= L <= old.to_layers and start <= step <= old.stage_end(L)):
            raise GrowError(f"{where} has {L} layers at step {step}, which its growth record ({old.as_flags()}, "
                            f"from {old.start_layers} layers at step {old.start_step}) does not lead to: it was "
                            f"trained or changed outside grow; pass --restart to start a new growth from it "
                            f"as it is")
        asked = replace(old, to_layers=to_layers, steps_per_stage=steps_per_stage, insert_at=insert_at, init=init,
                        seed=old.seed if seed is None else int(seed))
        done = L == old.to_layers and step == old.stage_end(L)
        if asked.same_schedule(old):
            if to_layers < L:
                raise GrowError(f"--to-layers {to_layers}: {where} has {L} layers already")
            return asked, Position(L, step, start, asked.stage_end(L), resumed=True)
        if not done:
            raise GrowError(f"{where} is in the middle of a growth ({old.as_flags()}; {L} layers, step {step}): run "
                            f"grow with those flags to finish it, or pass --restart to start a new growth from "
                            f"it as it is")
    if to_layers <= L:
        raise GrowError(f"--to-layers {to_layers}: {where} has {L} layer{'s' if L > 1 else ''}; "
                        f"grow to more than {L}")
    plan = GrowPlan(start_step=step, start_layers=L, to_layers=to_layers, steps_per_stage=steps_per_stage,
                    insert_at=insert_at, init=init, seed=checkpoint.seed if seed is None else int(seed))
    return plan, Position(L, step, step, plan.stage_end(L), resumed=False)


def _stage_written(model_path, plan, checkpoint):
    """Is M (`checkpoint`) at the end of its stage, and that stage's checkpoint written (it holds M)?"""
    L = checkpoint.hp.num_layers
    return checkpoint.step >= plan.stage_end(L) and _holds(stage_path(model_path, L), checkpoint)


def finished(model_path, plan, checkpoint):
    """Has the growth nothing left to do (M at its last stage's end, that stage's checkpoint written)?"""
    return checkpoint.hp.num_layers == plan.to_layers and _stage_written(model_path, plan, checkpoint)


def files_to_write(model_path, plan, checkpoint):
    """(layers, path) of each stage checkpoint this growth of `checkpoint` (M) will still write (the
    current stage's, unless written already, and every later one's), one at a time: a file already
    there under such a name is not one of this growth's."""
    first = checkpoint.hp.num_layers + (1 if _stage_written(model_path, plan, checkpoint) else 0)
    return ((L, stage_path(model_path, L)) for L in range(first, plan.to_layers + 1))


@dataclass
class Stage:
    """One stage of a growth, as the model's logs record it."""
    layers: int
    first_step: int          # its first optimizer step (stage start + 1)
    last_step: int           # its last step trained so far
    steps: int               # steps trained so far (S when done)
    loss: float              # the loss of its last step (nan: none yet)
    loss_avg: float          # the mean loss of its last min(10, steps) steps
    seconds: float           # time its steps took
    checkpoint: Path | None  # its checkpoint, once written
    done: bool


@dataclass
class GrowResult:
    plan: GrowPlan
    checkpoint: object                              # M in memory, as last saved
    stages: list = field(default_factory=list)      # the Stages finished (checkpoint written) in this run
    steps: int = 0                                  # training steps in this run
    stopped: bool = False                           # should_stop() said so
    failure: str | None = None                      # a non-finite loss or update stopped a stage
    last_loss: float = math.nan


def stage_table(checkpoint, plan, model_path):
    """[Stage] for every stage of the growth up to where M is, from M's logs (so a resumed growth
    reports its earlier stages too)."""
    losses, seconds = {}, {}
    for log in expanded(checkpoint.logs):
        if log.get("kind") == TRAIN_STEP:
            losses[log["step"]] = log["loss"]
            seconds[log["step"]] = int(log.get("elapsed_ms") or 0) / 1000
    rows = []
    for L in range(plan.start_layers, checkpoint.hp.num_layers + 1):
        end = plan.stage_end(L)
        first = end - plan.steps_per_stage + 1
        last = min(end, checkpoint.step)
        steps = [s for s in range(first, last + 1) if s in losses]
        tail = [losses[s] for s in steps[-10:]]
        done, path = checkpoint.step >= end, stage_path(model_path, L)
        rows.append(Stage(layers=L, first_step=first, last_step=last, steps=max(0, last - first + 1),
                          loss=losses.get(last, math.nan), loss_avg=sum(tail) / len(tail) if tail else math.nan,
                          seconds=sum(seconds[s] for s in steps),
                          checkpoint=path if done and path.exists() else None, done=done))
    return rows


def check_tokens(tokens, settings, num_tokens):
    """GrowError (one line) when `tokens` are too few to train on at context `num_tokens` with these
    settings (their validation split included)."""
    try:
        train_tokens, _ = split_tokens(tokens, settings["val_fraction"], num_tokens)
    except ValueError as exc:
        raise GrowError(str(exc)) from None
    if len(train_tokens) < num_tokens + 1:
        raise GrowError(f"the dataset has {len(train_tokens)} tokens; training needs at least num_tokens + 1 = "
                        f"{num_tokens + 1}")


def run_growth(model_path, checkpoint, plan, tokens, settings, *, dataset_info=None, save_every=100,
               save_minutes=0.0, display=None, should_stop=lambda: False, save=None, on_stage=None,
               on_model=None):
    """Grow `checkpoint`, read from `model_path` (M), by `plan` (from plan_growth), training on `tokens`
    with `settings` (every config.TRAINING_SETTINGS value, as train/settings.py settings_for_run gives
    them); returns a GrowResult. M is saved by the training loop (every `save_every` steps, every
    `save_minutes`, at a stage's end) and after each insertion, under its writer's lock (io/lock.py),
    as is each checkpoint. Callbacks: display(layers, steps, start_step) -> the loop's display for a
    stage's training (default: none); should_stop() -> stop after the current step (then saved), or
    before the next insertion; save(checkpoint, path) writes M (default: checkpoint.save);
    on_stage(Stage) after a stage's checkpoint is written; on_model(checkpoint) whenever the Checkpoint
    M's state is in changes (at the start and after each insertion)."""
    save = save or (lambda ckpt, path: ckpt.save(path))
    display = display or (lambda layers, steps, start_step: SilentDisplay())
    result = GrowResult(plan=plan, checkpoint=checkpoint)
    check_tokens(tokens, settings, checkpoint.hp.num_tokens)  # before any work
    with model_lock(model_path, "grow"):
        ckpt = checkpoint
        ckpt.train_state[PLAN_KEY] = plan.to_dict()  # stored with M's next save
        if on_model:
            on_model(ckpt)
        while True:
            L, end = ckpt.hp.num_layers, plan.stage_end(ckpt.hp.num_layers)
            if ckpt.step > end:
                raise GrowError(f"{model_path} is at step {ckpt.step}, past the end of its stage at {L} layers "
                                f"(step {end})")
            if ckpt.step < end:
                ckpt.ensure_optimizer(optimizer_config(settings))
                ckpt.train_state["settings"] = settings
                options = train_options(settings, end - ckpt.step, plan.seed, save_every=save_every,
                                        save_minutes=save_minutes)
                trained = run_training(ckpt, tokens, options, (lambda c=ckpt: save(c, model_path)),
                                       display(L, end - ckpt.step, ckpt.step), should_stop=should_stop,
                                       dataset_info=dataset_info)
                result.steps += trained.steps
                if trained.steps:
                    result.last_loss = trained.last_loss
                if trained.failure or trained.stopped or ckpt.step < end:
                    result.failure, result.stopped = trained.failure, trained.failure is None
                    return result
            path = stage_path(model_path, L)
            if not _holds(path, ckpt):  # else written before an interruption: this is a resumed run
                with model_lock(path, "grow"):
                    ckpt.save(path)
                stage = stage_table(ckpt, plan, model_path)[-1]
                result.stages.append(stage)
                if on_stage:
                    on_stage(stage)
            if L >= plan.to_layers:
                return result
            if should_stop():
                result.stopped = True
                return result
            ckpt, _ = insert_layer(ckpt, plan.insert_index(L), init=plan.init, seed=plan.insert_seed(L + 1))
            save(ckpt, model_path)
            result.checkpoint = ckpt
            if on_model:
                on_model(ckpt)


def _holds(path, checkpoint):
    """Does the model file at `path` hold `checkpoint` as it is (the same depth and the same last log
    entry, whose id is random: the same history)? Read from the header alone."""
    try:
        header = peek_header(path)
    except (ModelFileError, OSError):
        return False
    return (header["hyperparameters"].num_layers == checkpoint.hp.num_layers
            and last_log_id(header["logs"]) == last_log_id(checkpoint.logs))


def grow(model_path, dataset, to_layers, steps_per_stage, *, insert_at="end", init="near-identity", seed=None,
         restart=False, force=False, settings=None, **run_options):
    """Grow the model file `model_path` to `to_layers` layers, `steps_per_stage` steps per depth, on
    `dataset` (a text file or folder, or an array of token ids); or resume that growth. settings:
    any of config.TRAINING_SETTINGS (the rest: the file's, else the defaults); run_options: those of
    run_growth. Existing stage checkpoints that are not this growth's are refused unless `force`.
    Returns run_growth's GrowResult."""
    from femtogpt.io.checkpoint import load

    with model_lock(model_path, "grow"):
        ckpt = load(model_path)
        plan, _ = plan_growth(ckpt, to_layers, steps_per_stage, insert_at, init, seed, restart,
                              where=str(model_path))
        chosen, _, _ = settings_for_run(settings or {}, ckpt.train_state.get("settings", {}))
        batch_size, units = batch_shape(chosen)
        try:  # first: it bounds to_layers
            check_fits(training_bytes(replace(ckpt.hp, num_layers=plan.to_layers), batch_size, units=units),
                       f"training {model_path} at {plan.to_layers} layers, batch {batch_size}")
        except ModelTooLarge as exc:
            raise GrowError(str(exc)) from None
        taken = next((path for _, path in files_to_write(model_path, plan, ckpt) if path.exists()), None)
        if taken is not None and not force:
            raise GrowError(f"{taken} already exists; pass force=True to overwrite it")
        if finished(model_path, plan, ckpt):
            return GrowResult(plan=plan, checkpoint=ckpt)
        if isinstance(dataset, (str, Path)):
            from femtogpt.text.fingerprint import dataset_fingerprint
            from femtogpt.text.token_cache import encode_file_cached

            run_options.setdefault("dataset_info", {"dataset": str(dataset),
                                                    "dataset_hash": dataset_fingerprint(dataset)})
            dataset = encode_file_cached(ckpt.tokenizer, dataset)
        return run_growth(model_path, ckpt, plan, dataset, chosen, **run_options)
