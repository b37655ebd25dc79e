"""A run resumed from a last.pt kept without its best.pt (issue 27): its summary said it kept
best.pt, printed an nntrain-eval command that failed, and a best_epoch its test score was not
of. Now it names the checkpoint it tested, and nntrain-eval of the run uses that one."""

from __future__ import annotations

import json

from tests.conftest import run_nntrain
from tests.test_evaluate import run_eval
from tests.test_hardening import SMOKE, run_dirs


def test_a_run_without_best_pt_says_what_it_tested_and_its_eval_command_works(tmp_path):
    assert (
        run_nntrain(*SMOKE, "trainer.max_epochs=2", "hydra.run.dir=run", cwd=tmp_path).returncode
        == 0
    )
    (tmp_path / "ck").mkdir()
    (tmp_path / "ck/last.pt").write_bytes((tmp_path / "run/checkpoints/last.pt").read_bytes())
    # Nothing more to train: the new run directory never gets a best.pt of its own.
    done = run_nntrain("resume=ck/last.pt", "trainer.max_epochs=2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (new_run,) = run_dirs(tmp_path)
    assert not (new_run / "checkpoints/best.pt").exists()
    shown = new_run.relative_to(tmp_path)
    metrics = json.loads((new_run / "metrics.json").read_text())
    assert metrics["tested_epoch"] == 2
    assert (
        f"checkpoints  {shown}/checkpoints/last.pt (tested; best.pt of epoch "
        f"{metrics['best_epoch']} was not kept)" in done.stdout
    )
    assert f"evaluate     nntrain-eval ckpt={shown}" in done.stdout
    evaluated = run_eval(f"ckpt={shown}", cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "using last.pt, the checkpoint the run was tested with" in " ".join(
        evaluated.stdout.split()
    )
    result = json.loads((new_run / "eval_test.json").read_text())
    assert result["checkpoint"] == "checkpoints/last.pt"
    assert result["test/acc"] == metrics["test/acc"]
