"""sar-train and sar-eval: bad input (checkpoint, --out, --bundle, --device, --scenes, config values) gives
one error line and exit 2, checked before the work starts; a damaged checkpoint is refused, not loaded."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from codec_fixtures import SIGNAL_IN_IMPORT
from sar_compress_plugin.core.preprocessing import PreprocessingParams
from trainer.checkpoint import CheckpointError, load_checkpoint, make_checkpoint, save_checkpoint
from trainer.cli import main as train_main
from trainer.config import ConfigError, resolve
from trainer.evaluate import main as eval_main
from trainer.registry import create_model

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sar_compress_plugin" / "sample_data"
SCENE = SAMPLES / "s1_iw_grd_frankfurt_512.tif"
HAS_PROC = os.path.isdir("/proc/self")


def _checkpoint(path: Path) -> Path:
    torch.manual_seed(0)
    model = create_model("baseline", channels=8, latent_channels=16, hyper_channels=8, lambdas=[0.001, 0.01])
    save_checkpoint(make_checkpoint(model, epoch=1, step=1, best_val_loss=0.5, history=[],
                                    preprocessing_params=PreprocessingParams(clip_db=(20.0, 60.0)).to_dict(),
                                    config={"data": str(SCENE)}, data_summary={}), path)
    return path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _unusable_outs(tmp_path: Path) -> list[tuple[Path, str]]:
    """An existing file, a folder under a file and (on Linux) a folder /proc cannot hold."""
    afile = tmp_path / "afile"
    afile.write_text("keep")
    return [(afile, "exists and is not a folder"), (afile / "sub", "cannot write there (Not a directory)"),
            *([(Path("/proc/out"), "cannot write there")] if HAS_PROC else [])]


def test_empty_checkpoint_is_one_clear_line(tmp_path, capsys):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    assert eval_main([str(empty), "--out", str(tmp_path / "ev")]) == 2
    assert "empty.pth: not a checkpoint: empty file" in _one_error_line(capsys)
    assert train_main(["--resume", str(empty), "--data", str(SCENE), "--out", str(tmp_path / "tr")]) == 2
    assert "empty.pth: not a checkpoint: empty file" in _one_error_line(capsys)


def test_text_random_bytes_and_foreign_objects_are_one_line_without_unsafe_advice(tmp_path, capsys):
    """torch's reader met a text file with a KeyError traceback, and its message for pickled objects advises
    turning the weights-only check off, which must never reach a user of this project."""
    import argparse

    text, noise, foreign = tmp_path / "notes.pth", tmp_path / "noise.pth", tmp_path / "foreign.pth"
    text.write_text("hello world\n")
    noise.write_bytes(bytes(range(256)) * 12)
    torch.save({"model_name": argparse.Namespace(variant="baseline")}, foreign)
    for path, why in ((text, "not a PyTorch zip archive"), (noise, "not a PyTorch zip archive"),
                      (foreign, "holds objects other than tensors and plain values")):
        assert eval_main([str(path), "--out", str(tmp_path / "ev")]) == 2
        line = _one_error_line(capsys)
        assert f"{path.name}: not a" in line and why in line and "weights_only" not in line
        assert train_main(["--init", str(path), "--data", str(SCENE), "--out", str(tmp_path / "tr")]) == 2
        assert why in _one_error_line(capsys)
    assert not (tmp_path / "ev").exists() and not (tmp_path / "tr").exists()


def test_damaged_checkpoint_is_refused_by_its_checksums(tmp_path, capsys):
    path = _checkpoint(tmp_path / "best.pth")
    with zipfile.ZipFile(path) as archive:
        record = max(archive.infolist(), key=lambda r: r.file_size)  # a tensor's bytes
    data = bytearray(path.read_bytes())
    start = record.header_offset + 30 + len(record.filename.encode()) + 64  # inside the record's data
    data[start:start + 16] = bytes(b ^ 0xFF for b in data[start:start + 16])
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="best.pth: damaged checkpoint"):
        load_checkpoint(path)
    assert eval_main([str(path), "--out", str(tmp_path / "ev")]) == 2
    assert "damaged checkpoint" in _one_error_line(capsys)


def test_sar_eval_checks_its_arguments_before_the_work(tmp_path, capsys, monkeypatch):
    ckpt = _checkpoint(tmp_path / "best.pth")
    for out, message in _unusable_outs(tmp_path):
        assert eval_main([str(ckpt), "--out", str(out)]) == 2
        assert message in _one_error_line(capsys)
    (tmp_path / "not_a_bundle").mkdir()
    for bundle in (tmp_path / "absent", tmp_path / "not_a_bundle"):
        assert eval_main(["--bundle", str(bundle), "--out", str(tmp_path / "ev")]) == 2
        assert "not a model bundle (no manifest.json)" in _one_error_line(capsys)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    for device, message in (("foo", "--device must be cpu or cuda, got 'foo'"),
                            ("cuda", "--device cuda: this torch has no CUDA device")):
        assert eval_main([str(ckpt), "--device", device, "--out", str(tmp_path / "ev")]) == 2
        assert message in _one_error_line(capsys)


def test_sar_eval_scenes_are_names_not_paths(tmp_path, capsys, tiny_bundle):
    rc = eval_main(["--bundle", str(tiny_bundle), "--scenes", str(SCENE), "--out", str(tmp_path / "ev")])
    assert rc == 2
    assert "--scenes takes scene file names" in _one_error_line(capsys)


def test_sar_train_refuses_an_unusable_out_folder(tmp_path, capsys):
    for out, message in _unusable_outs(tmp_path):
        assert train_main(["--data", str(SCENE), "--out", str(out), "--device", "cpu"]) == 2
        assert message in _one_error_line(capsys)


def test_config_values_of_the_wrong_type_or_range_are_one_line(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text('batch_size: "x"\n')
    assert train_main(["--config", str(config), "--data", str(SCENE), "--out", str(tmp_path / "tr")]) == 2
    assert "batch_size must be an integer, got 'x'" in _one_error_line(capsys)
    for values, message in (({"val_fraction": 1.5}, "val_fraction must be in"),
                            ({"val_fraction": 0}, "val_fraction must be in"),
                            ({"lambdas": [0.01, "a"]}, "lambdas must be a list of numbers"),
                            ({"amp": "yes"}, "amp must be true or false"),
                            ({"epochs": True}, "epochs must be an integer"),
                            ({"max_minutes": "10"}, "max_minutes must be a number or null"),
                            ({"max_steps": 0}, "max_steps must be >= 1"),
                            ({"steps_per_epoch": -5}, "steps_per_epoch must be >= 1"),
                            ({"patience": 0}, "patience and max_bad_batches must be >= 1")):
        with pytest.raises(ConfigError, match=message):
            resolve(values, {})
    assert resolve({"max_minutes": None, "lr": 1, "lambdas": [1, 2]}, {}).lr == 1  # an int is a number


def test_exponents_without_a_dot_are_numbers_in_a_config_file(tmp_path):
    """YAML 1.1 reads `lr: 2e-4` as a string; written so in most configs, it must still be a number."""
    from trainer.config import read_config_file  # noqa: PLC0415

    config = tmp_path / "c.yaml"
    config.write_text("lr: 2e-4\nlambdas: [1e-3, 2.5E-2, 0.08]\ncheckpoint_minutes: 5\n")
    values = read_config_file(config)
    assert values == {"lr": 2e-4, "lambdas": [1e-3, 2.5e-2, 0.08], "checkpoint_minutes": 5}
    assert resolve(values, {}).lr == 2e-4


def test_a_failed_start_leaves_no_new_out_folder(tmp_path, capsys):
    """Missing data fails after the run has written its config and log, a missing checkpoint before: either
    way --out (and its new parents) are gone again."""
    for argv in (["--data", str(tmp_path / "nodata")],
                 ["--data", str(SCENE), "--resume", str(tmp_path / "no.pth")],
                 ["--data", str(SCENE), "--init", str(tmp_path / "no.pth"), "--patch-size", "64"]):
        assert train_main([*argv, "--out", str(tmp_path / "new" / "run"), "--device", "cpu"]) == 2
        _one_error_line(capsys)
        assert not (tmp_path / "new").exists(), argv
    assert eval_main([str(tmp_path / "no.pth"), "--out", str(tmp_path / "new" / "ev")]) == 2
    assert "no such checkpoint file" in _one_error_line(capsys)
    assert not (tmp_path / "new").exists()


def test_a_failed_start_leaves_an_existing_out_folder_as_it_was(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("mine\n")
    (out / "train.log").write_text("earlier run\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert train_main(["--data", str(tmp_path / "nodata"), "--out", str(out), "--device", "cpu"]) == 2
    assert "nodata: no such file or folder" in _one_error_line(capsys)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    ckpt = _checkpoint(tmp_path / "best.pth")
    assert eval_main([str(ckpt), str(tmp_path / "no.pth"), "--out", str(out)]) == 2  # fails on the second
    assert "no such checkpoint file" in _one_error_line(capsys)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_an_unknown_variant_in_a_config_file_is_one_line(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("variant: basline\n")
    assert train_main(["--config", str(config), "--data", str(SCENE), "--out", str(tmp_path / "tr")]) == 2
    err = _one_error_line(capsys)
    assert "variant must be one of attention, baseline, residual, resnet_lite, got 'basline'" in err
    assert not (tmp_path / "tr").exists()


def test_sar_train_help_shows_the_real_defaults(capsys):
    with pytest.raises(SystemExit):
        train_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text  # every option is None until the config file and flags resolve it
    assert "--epochs EPOCHS epochs in total, a resumed run's included [1000]" in text
    assert "--patch-size PATCH_SIZE multiple of 64 [256]" in text


def test_sar_train_help_says_what_each_variant_is_and_where_checkpoints_go(capsys):
    """The help listed the variant names alone and called --out "run folder", without last.pth or --resume."""
    with pytest.raises(SystemExit):
        train_main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "`baseline`: Ballé et al. 2018's transforms" in text and "`residual` (\"Variant B\"): pre-activation" in text
    assert "`attention` (\"Variant C\")" in text and "`resnet_lite`: the baseline plus" in text
    assert "run folder: last.pth, best.pth" in text and "same command plus --resume" in text


def test_a_run_folder_given_for_a_checkpoint_says_so(tmp_path, capsys):
    """A folder was "no such checkpoint file", though it exists: say what it is and what it holds."""
    from export.cli import main as export_main

    run = tmp_path / "run"
    run.mkdir()
    _checkpoint(run / "best.pth")
    for call in (lambda: eval_main([str(run), "--out", str(tmp_path / "ev")]),
                 lambda: train_main(["--resume", str(run), "--data", str(SCENE), "--out", str(tmp_path / "tr")]),
                 lambda: export_main([str(run), str(tmp_path / "bundle")])):
        assert call() == 2
        assert f"{run}: is a folder, not a checkpoint file (it holds best.pth)" in _one_error_line(capsys)


def test_resuming_with_another_shape_names_only_the_options_that_differ(tmp_path, capsys):
    """The refusal printed both whole model configs (lambdas and all), leaving the reader to find the difference."""
    ckpt = _checkpoint(tmp_path / "last.pth")
    assert train_main(["--resume", str(ckpt), "--channels", "16", "--context-slices", "2", "--data", str(SCENE),
                       "--out", str(tmp_path / "tr"), "--patch-size", "64", "--no-progress"]) == 2
    assert _one_error_line(capsys).rstrip().endswith(
        "last.pth: checkpoint has --channels 8, --context-slices 1, this run --channels 16, --context-slices 2")
    # an option the checkpoint left at its default is not "--decoder-channels None", which no one can type
    assert train_main(["--resume", str(ckpt), "--decoder-channels", "4", "--data", str(SCENE),
                       "--out", str(tmp_path / "tr"), "--patch-size", "64", "--no-progress"]) == 2
    assert _one_error_line(capsys).rstrip().endswith(
        "last.pth: checkpoint has no --decoder-channels, this run --decoder-channels 4")


def test_warm_start_help_describes_it(capsys):
    """`--help` was the usage line as an error, exit 2."""
    from trainer.warm_start import main as warm_start_main

    with pytest.raises(SystemExit) as stop:
        warm_start_main(["--help"])
    assert stop.value.code == 0 and "fp16 warm-start copy" in " ".join(capsys.readouterr().out.split())


def test_sar_export_skips_an_unreadable_calibration_file_without_gdals_log(tmp_path):
    """A --calibration folder with one broken file stopped the export, after GDAL's own log line: sar-export
    logged rasterio's INFO records (trainer.reporting.configure_cli_logging leaves them out)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "scene.tif").write_bytes(SCENE.read_bytes())
    (data / "cut.tif").write_bytes(SCENE.read_bytes()[:300])
    ckpt = _checkpoint(tmp_path / "c.pth")
    res = subprocess.run([sys.executable, "-m", "export.cli", str(ckpt), str(tmp_path / "bundle"), "--calibration",
                          str(data), "--tile", "64", "--max-tiles", "1"], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    assert f"skipping {data / 'cut.tif'}: cannot read raster" in res.stderr and "GDAL" not in res.stderr, res.stderr


def test_sar_eval_on_a_truncated_scene_prints_one_line_not_gdals_log(tmp_path):
    """rasterio logs each GDAL error at INFO before it raises, and the CLIs log INFO: the GDAL lines came ahead of
    the one error line. In a subprocess: pytest's own log handler would swallow them in-process."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "cut.tif").write_bytes(SCENE.read_bytes()[:300])
    ckpt = _checkpoint(tmp_path / "c.pth")
    res = subprocess.run([sys.executable, "-m", "trainer.evaluate", str(ckpt), "--data", str(data), "--out",
                          str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "cut.tif" in lines[0], res.stderr


def test_sar_eval_of_a_checkpoint_without_its_data_is_one_line(tmp_path, capsys):
    """A checkpoint whose config names no data (written by a tool, or an old run) was a TypeError traceback from
    Path(None); one whose data has moved named a path the user never typed, without saying what it was."""
    model = create_model("baseline", channels=8, latent_channels=16, hyper_channels=8, lambdas=[0.001, 0.01])
    for config, message in (({}, "the checkpoint does not name its training data; pass --data"),
                            ({"data": str(tmp_path / "moved")}, "its training data: ")):
        path = tmp_path / "c.pth"
        save_checkpoint(make_checkpoint(model, epoch=1, step=1, best_val_loss=0.5, history=[],
                                        preprocessing_params=PreprocessingParams(clip_db=(20.0, 60.0)).to_dict(),
                                        config=config, data_summary={}), path)
        assert eval_main([str(path), "--out", str(tmp_path / "ev")]) == 2
        err = _one_error_line(capsys)
        assert f"{path}: {message}" in err and ("pass --data" in err)
        assert not (tmp_path / "ev").exists()


def test_warm_start_and_average_into_a_folder_are_one_line(tmp_path, capsys):
    """OUT naming an existing folder ended trainer.warm_start (and trainer.average) in an IsADirectoryError
    traceback from os.replace, after the whole copy was written, and left OUT.tmp beside the folder."""
    from trainer.average import main as average_main
    from trainer.warm_start import main as warm_start_main

    model = create_model("baseline", channels=8, latent_channels=16, hyper_channels=8, lambdas=[0.001, 0.01])
    paths = []
    for step in (1, 2):
        paths.append(tmp_path / f"step{step}.pth")
        save_checkpoint(make_checkpoint(model, epoch=step, step=step, best_val_loss=1.0, history=[],
                                        preprocessing_params={}, config={}, data_summary={}), paths[-1])
    (tmp_path / "out").mkdir()
    for run in (lambda: warm_start_main([str(paths[0]), str(tmp_path / "out")]),
                lambda: average_main([str(tmp_path / "out"), *map(str, paths)])):
        assert run() == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and "cannot write checkpoint" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "step1.pth", "step2.pth"]


#: A prelude after which the process signals itself when `function` of `module` is first called: a Ctrl-C in
#: the middle of the work.
_SIGNAL_IN_CALL = """
import importlib, os, signal, sys
owner = importlib.import_module({module!r})
real = getattr(owner, {function!r})
def interrupted(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)
    return real(*args, **kwargs)
setattr(owner, {function!r}, interrupted)
"""


def _entry_args(entry: str, ckpt, out) -> list[str]:
    """The command line each training entry point runs with in the signal tests: its shortest real work."""
    return {"trainer.cli": ["--data", str(SCENE), "--out", str(out), "--max-steps", "1"],
            "export.cli": [str(ckpt), str(out), "--calibration", str(SCENE), "--max-tiles", "1"],
            "trainer.evaluate": [str(ckpt), "--out", str(out)]}[entry]


@pytest.mark.parametrize("entry, module, function, line", [
    ("trainer.cli", "trainer.registry", "", "interrupted: stopped while starting; no output written"),
    ("trainer.cli", "trainer.models.baseline", "", "interrupted: stopped while starting; no output written"),
    ("export.cli", "export.onnx_export", "", "interrupted: stopped while starting; no output written"),
    ("export.cli", "export.onnx_export", "export_bundle", "interrupted: no output written"),
    ("trainer.evaluate", "trainer.data", "", "interrupted: stopped while starting; no output written"),
    ("trainer.evaluate", "trainer.evaluate", "evaluate_checkpoints", "interrupted: no output written")])
def test_a_ctrl_c_while_a_training_command_loads_or_works_is_one_line(tmp_path, entry, module, function, line):
    """sar-export and sar-eval had no Ctrl-C handling (a KeyboardInterrupt traceback wherever it landed), and
    sar-train's started only after its imports and argparse, which load torch and every model (seconds)."""
    (tmp_path / "in").mkdir()
    ckpt = _checkpoint(tmp_path / "in" / "last.pth")
    out = tmp_path / "out"
    args = _entry_args(entry, ckpt, out)
    prelude = (_SIGNAL_IN_CALL if function else SIGNAL_IN_IMPORT).format(module=module, function=function)
    code = f"{prelude}\nfrom {entry} import main\nsys.exit(main())"
    r = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, text=True, capture_output=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip().splitlines()[-1] == line and "Traceback" not in r.stderr, r.stderr
    assert not out.exists()


@pytest.mark.parametrize("entry, module", [
    ("trainer.cli", "trainer.registry"),  # the entry module's own imports: torch and every model
    ("trainer.cli", "trainer.train"),  # sar-train's heavy imports once its arguments are valid, --out made
    ("export.cli", "export.onnx_export"),
    ("trainer.evaluate", "trainer.data")])
def test_a_sigterm_while_a_training_command_loads_is_one_line_and_143(tmp_path, entry, module):
    """A SIGTERM (`kill`, a job scheduler's stop) while sar-train, sar-export or sar-eval loaded torch ended the
    command without a word (killed by the signal), and in sar-train's case left the --out folder it had just
    made. Now it is the one line a Ctrl-C there gets, as "terminated", and 143."""
    (tmp_path / "in").mkdir()
    ckpt = _checkpoint(tmp_path / "in" / "last.pth")
    out = tmp_path / "out"
    args = _entry_args(entry, ckpt, out)
    prelude = SIGNAL_IN_IMPORT.replace("signal.SIGINT", "signal.SIGTERM").format(module=module)
    assert "signal.SIGTERM" in prelude
    code = f"{prelude}\nfrom {entry} import main\nsys.exit(main())"
    r = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, text=True, capture_output=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert r.returncode == 143, (r.returncode, r.stderr)
    last = r.stderr.strip().splitlines()[-1]
    assert last in ("terminated: stopped while starting; no output written", "terminated: no checkpoint written")
    assert "Traceback" not in r.stderr, r.stderr
    assert not out.exists()


#: A SIGTERM that lands in code run by exec() of a string (as a dataclass's generated methods are, which torch's
#: lazy imports create by the hundred) while trainer.train loads.
_SIGTERM_IN_EXEC = """
import sys
class SigtermInExec:
    def find_spec(self, name, path=None, target=None):
        if name == "trainer.train":
            sys.meta_path.remove(self)
            exec("import os, signal\\nos.kill(os.getpid(), signal.SIGTERM)\\nfor _ in range(10**7): pass")
sys.meta_path.insert(0, SigtermInExec())
"""


def test_python_m_trainer_ends_a_sigterm_with_143_not_as_a_ctrl_c(tmp_path):
    """`python -m trainer` (and torchrun's `-m trainer`) printed "terminated" for a SIGTERM and returned 143,
    and yet the process ended killed by SIGINT (130) when the KeyboardInterrupt had passed through exec()'d code:
    CPython's mark for an unhandled Ctrl-C, which it checks after a module run by -m returns."""
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(_SIGTERM_IN_EXEC)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(REPO), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "trainer", "--data", str(SCENE), "--out", str(out), "--max-steps", "1"],
                       cwd=REPO, text=True, capture_output=True, timeout=300, env=env, check=False)
    assert r.stderr.strip().splitlines()[-1] == "terminated: no checkpoint written", r.stderr
    assert r.returncode == 143, (r.returncode, r.stderr)
    assert not out.exists()


def test_an_empty_path_is_refused_not_read_as_the_current_folder(tmp_path, capsys, monkeypatch):
    """Path("") is ".": `sar-train --out "$RUN"` with RUN unset trained into the current folder, `--resume
    "$CKPT"` with CKPT unset started a new run over the run folder's own checkpoints, and `sar-eval --out ""`
    wrote its results into the current folder. Each is one error line now, before any work."""
    ckpt = _checkpoint(tmp_path / "last.pth")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    train = ["--data", str(SCENE), "--out", str(tmp_path / "run"), "--max-steps", "1"]
    for run, args, what in [
            (train_main, [*train, "--out", ""], "--out"),
            (train_main, [*train, "--data", ""], "--data"),
            (train_main, [*train, "--resume", ""], "--resume"),
            (train_main, [*train, "--init", ""], "--init"),
            (eval_main, [str(ckpt), "--out", ""], "--out"),
            (eval_main, [str(ckpt), "--out", str(tmp_path / "eval"), "--data", ""], "--data")]:
        assert run(args) == 2
        assert capsys.readouterr().err == f"error: {what} is an empty path\n"
    assert os.listdir(here) == [] and sorted(os.listdir(tmp_path)) == ["here", "last.pth"]


def test_a_cuda_device_the_machine_lacks_is_one_line(tmp_path, capsys, monkeypatch):
    """`--device cuda:1` on a one-GPU machine passed the checks and ended sar-train and sar-eval in torch's
    "invalid device ordinal" traceback once the data had loaded; `cuda:x` in torch.device's."""
    ckpt = _checkpoint(tmp_path / "best.pth")
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    assert train_main(["--data", str(SCENE), "--out", str(tmp_path / "run"), "--device", "cuda:1"]) == 2
    assert "--device cuda:1: this machine has 1 CUDA device(s), numbered from 0" in _one_error_line(capsys)
    assert train_main(["--data", str(SCENE), "--out", str(tmp_path / "run"), "--device", "cuda:x"]) == 2
    assert "device must be auto, cpu, cuda or cuda:N, got 'cuda:x'" in _one_error_line(capsys)
    assert eval_main([str(ckpt), "--device", "cuda:1", "--out", str(tmp_path / "ev")]) == 2
    assert "--device cuda:1: this machine has 1 CUDA device(s), numbered from 0" in _one_error_line(capsys)
    assert not (tmp_path / "run").exists() and not (tmp_path / "ev").exists()
