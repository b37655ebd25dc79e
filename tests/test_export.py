"""nntrain-export: ONNX, TorchScript and safetensors files that compute what the run's model does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from nntrain.checkpoint import load_checkpoint
from nntrain.commands.export import export
from nntrain.commands.train import run
from nntrain.errors import UserError
from nntrain.inference.trained_run import build_model, load_run
from tests.conftest import compose_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A digits MLP run of two short epochs."""
    run_dir = tmp_path_factory.mktemp("export") / "run"
    run(compose_config("trainer=debug", "trainer.report_images=false"), str(run_dir))
    return run_dir


def exported(run_dir: Path, fmt: str, output: Path | None = None) -> list[Path]:
    cfg = OmegaConf.create({"ckpt": str(run_dir), "format": fmt, "output": output and str(output)})
    return export(cfg)


def a_batch() -> torch.Tensor:
    return torch.randn(7, 1, 8, 8, generator=torch.Generator().manual_seed(1))  # not the export's 2


def the_model(run_dir: Path) -> torch.nn.Module:
    return build_model(load_run(run_dir), "cpu")


def test_onnx_runs_in_onnxruntime_with_the_models_outputs(trained):
    import onnxruntime

    path, description = exported(trained, "onnx")
    assert path == trained / "export" / "model.onnx"
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = a_batch()
    (logits,) = session.run(["logits"], {"input": x.numpy()})
    with torch.no_grad():
        expected = the_model(trained)(x).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    info = json.loads(description.read_text())
    assert info["input"] == {"name": "input", "shape": [None, 1, 8, 8], "dtype": "float32"}
    assert info["class_names"] == [str(d) for d in range(10)]
    assert info["task"] == "classification" and info["files"]["onnx"] == "model.onnx"
    spec = load_checkpoint(trained / "checkpoints" / "best.pt")["inputs"]
    assert (
        info["preprocessing"]["mean"] == spec["mean"]
        and info["preprocessing"]["std"] == spec["std"]
    )
    assert info["model"]["_target_"] == "nntrain.models.mlp.MLP"


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_loads_without_nntrain_and_gives_the_models_outputs(trained, tmp_path):
    path, description = exported(trained, "torchscript", tmp_path / "deploy")
    assert path == tmp_path / "deploy" / "model.torchscript.pt"
    loaded = torch.jit.load(str(path))
    x = a_batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), the_model(trained)(x), rtol=1e-6, atol=1e-6)
    assert json.loads(description.read_text())["files"] == {"torchscript": "model.torchscript.pt"}
    # given back as a checkpoint (nntrain-predict ckpt=deploy/model.torchscript.pt): our
    # sentence, not torch's advice to load it with weights_only=False
    with pytest.raises(UserError) as caught:
        load_checkpoint(path)
    assert str(caught.value) == (
        f"{path} is a TorchScript model (as nntrain-export writes), not a checkpoint; pass a run "
        "directory or its checkpoints/best.pt."
    )


def test_safetensors_weights_load_back_bitwise_equal(trained, tmp_path):
    from safetensors.torch import load_file

    path, _ = exported(trained, "safetensors", tmp_path)
    weights = load_file(str(path))
    saved = load_checkpoint(trained / "checkpoints" / "best.pt")["model"]
    assert weights.keys() == saved.keys()
    for name, tensor in saved.items():
        assert torch.equal(weights[name], tensor) and weights[name].dtype == tensor.dtype, name


def test_a_missing_checkpoint_is_one_sentence(tmp_path):
    with pytest.raises(UserError, match=r"^ckpt=.*nothing does not exist; give a run directory"):
        exported(tmp_path / "nothing", "torchscript")


@pytest.mark.parametrize("in_the_way", ["model.torchscript.pt", "model.json"])
def test_a_folder_in_the_way_of_a_file_is_one_sentence_and_nothing_is_written(
    in_the_way, trained, tmp_path
):
    # was "torchscript export of MLP failed ...; try another format", or a traceback after
    # writing the model without its model.json
    (tmp_path / "deploy" / in_the_way).mkdir(parents=True)
    with pytest.raises(UserError) as caught:
        exported(trained, "torchscript", tmp_path / "deploy")
    assert str(caught.value) == (
        f"cannot write {tmp_path}/deploy/{in_the_way}: a folder of that name is in the way; "
        "move it, or give another folder with output=DIR."
    )
    assert [p.name for p in (tmp_path / "deploy").iterdir()] == [in_the_way]


def test_cli_refuses_an_unknown_format_in_one_sentence(trained, tmp_path):
    script = str(Path(sys.executable).with_name("nntrain-export"))
    done = subprocess.run(
        [script, f"ckpt={trained}", "format=tflite"], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "Error: format must be one of onnx, torchscript, safetensors, got 'tflite'; for example "
        "format=onnx."
    )
    assert not (trained / "export" / "model.tflite").exists()
