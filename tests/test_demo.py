"""tools/demo.py: the demo as a library call, without Click."""
from femtogpt.io.checkpoint import load
from femtogpt.tools.demo import run_demo


class Quiet:
    def step(self, *a): pass
    def validation(self, *a): pass
    def message(self, *a): pass
    def close(self): pass


def test_the_demo_writes_its_data_trains_saves_and_samples(tmp_path):
    said, saved = [], []
    out = run_demo(tmp_path / "dataset.txt", "m.dat", seed=3, seconds=1.0,
                   save=lambda ckpt: (ckpt.save(tmp_path / "m.dat"), saved.append(ckpt.step)),
                   display=Quiet(), say=said.append)
    assert (tmp_path / "dataset.txt").read_text().count(";") > 1000
    assert out.result is not None and out.checkpoint.step >= 1 and saved[-1] == out.checkpoint.step
    assert load(tmp_path / "m.dat").step == out.checkpoint.step
    assert len(out.samples) == 3 and all(isinstance(s, str) for s in out.samples)
    assert [line[:4] for line in said] == ["1/3 ", "2/3 ", "3/3 "] and "m.dat" in said[1]
