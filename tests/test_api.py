"""The documented Python API (issue 15): the README's notebook example runs as written, and the API
trains like the CLI (settings stored, resume exact, the same bits as `femtogpt train`)."""
import re
from pathlib import Path

import numpy as np
import pytest

import femtogpt
from femtogpt.io.model_file import load_model_file
from femtogpt.tasks.toy_data import generate_text
from tests.run_cli import run

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dataset.txt").write_text(generate_text("simple_dummy", 2000, seed=1))
    return tmp_path


def readme_example():
    """The Python block of the README's "Python API" section."""
    text = README.read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs(workdir):
    namespace = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    model = femtogpt.load("model.dat")
    assert model.step == namespace["model"].step > 0 and isinstance(namespace["text"], str)
    assert set(namespace["scores"]) == {"loss", "perplexity", "tokens"}


def test_the_api_trains_like_the_cli_and_resumes_exactly(workdir):
    model = femtogpt.init(num_tokens=16, embedding_degree=16, num_layers=1, num_heads=2, seed=3)
    model.save("api.dat")
    (workdir / "cli.dat").write_bytes((workdir / "api.dat").read_bytes())
    seen = []
    result = model.train("dataset.txt", steps=3, lr=3e-3, batch_size=4, units=3, dropout=0.1,
                         on_step=lambda step, loss, lr, s: seen.append(step))
    assert seen == [1, 2, 3] and result.steps == 3 and model.settings["units"] == 3
    model.train("dataset.txt", steps=2)  # the stored settings, as a bare `femtogpt train`
    model.save()
    run("train", "--model", "cli.dat", "--steps", 5, "--quiet", "--lr", "3e-3", "--batch-size", 4,
        "--units", 3, "--dropout", 0.1)
    a, b = load_model_file(workdir / "api.dat"), load_model_file(workdir / "cli.dat")
    for name in a.tensors:
        np.testing.assert_array_equal(a.tensors[name], b.tensors[name], err_msg=name)
    with pytest.raises(TypeError, match="unknown setting 'learning_rate'"):
        model.train("dataset.txt", steps=1, learning_rate=1e-3)
    with pytest.raises(ValueError, match="beta2=1.5: expected a number in"):
        model.train("dataset.txt", steps=1, beta2=1.5)


def test_import_femtogpt_stays_light():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", "import sys, femtogpt; print('numpy' in sys.modules, "
                          "callable(femtogpt.load), 'numpy' in sys.modules)"], capture_output=True, text=True)
    assert out.stdout.split() == ["False", "True", "False"]  # numpy loads when the API first runs the engine


def readme_trace_example():
    text = README.read_text()
    section = text[text.index("## Python API"):]
    return re.findall(r"```python\n(.*?)```", section, re.S)[1]


def test_the_readme_trace_example_runs_and_trace_is_the_models_forward(workdir):
    namespace = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    exec(compile(readme_trace_example(), "README.md", "exec"), namespace)
    model, t = namespace["model"], namespace["t"]
    assert len(t.tokens) == t.resid.shape[2] == len(model.tokenizer.encode("bajo;\nduka;"))
    assert np.allclose(t.probs.sum(axis=-1), 1.0, atol=1e-5)
    ids = np.asarray([model.tokenizer.encode("bajo;\nduka;")])
    logits = model.checkpoint.model.head(t.normed[-1])
    np.testing.assert_allclose(logits, model.checkpoint.model.logits(ids), rtol=1e-5, atol=1e-5)
