"""Every error of the ``t2igan`` command is one clear line (the exact first line of each), and
``generate`` writes readable files for any caption."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image

from t2igan.callbacks.figures import MIN_LABEL_WIDTH, labelled_grid
from t2igan.cli import main
from t2igan.command import COMMANDS, DEBUG_HINT, run_command
from t2igan.data import HashingEncoder, SentenceTransformerEncoder
from t2igan.models import GANINTCLS

from .conftest import ROOT, TINY_DATA

QUICKSTART = str(ROOT / "experiments" / "quickstart.yaml")
T2IGAN = str(Path(sys.executable).parent / "t2igan")
HOW = "pass a checkpoint that `t2igan fit` wrote, e.g. runs/quickstart/checkpoints/last.ckpt"


def save_untrained(path: Path, encoder) -> Path:
    """An untrained 32 px GAN-INT-CLS checkpoint that records ``encoder`` (no training needed
    to test what ``generate`` does with files and captions)."""
    torch.manual_seed(0)
    model = GANINTCLS(text_dim=encoder.dim, image_size=32, ngf=8, ndf=8,
                      text_encoder=encoder.spec())  # fmt: skip
    checkpoint = {"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict(),
                  "pytorch-lightning_version": L.__version__}  # fmt: skip
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    return str(save_untrained(tmp_path_factory.mktemp("gan") / "gan.ckpt", HashingEncoder(64)))


def fails(argv: list[str], capsys) -> tuple[int, list[str]]:
    """The exit status of ``t2igan ARGV`` and the lines it wrote to stderr."""
    with pytest.raises(SystemExit) as exit:
        main(argv)
    return exit.value.code, capsys.readouterr().err.splitlines()


def test_help_lists_every_subcommand_and_version(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    for name in ("fit", "validate", "test", "predict", "generate", "prepare", "download", "embed"):
        (line,) = [ln for ln in lines if ln.split()[:1] == [name]]
        assert line.split(maxsplit=1)[1] == COMMANDS[name]
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out == f"t2igan {importlib.metadata.version('t2igan')}\n"


def test_help_answers_without_importing_torch():
    """The console script's entry point answers --help at once, not after the ~10 s import of
    PyTorch and Lightning."""
    script = ("import sys; from t2igan.cli import main; sys.argv = ['t2igan', '--help']\n"
              "try:\n    main()\nexcept SystemExit:\n    print('torch' in sys.modules)")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("usage: t2igan <command>") and lines[-1] == "False"


def test_mistyped_subcommand_suggests_the_closest(capsys):
    assert fails(["genrate", "--ckpt", "x"], capsys) == (
        2, ["t2igan: unknown command 'genrate' (did you mean generate?); t2igan --help lists them"],
    )  # fmt: skip


def _files(tmp_path: Path, ckpt: str) -> None:
    (tmp_path / "notes.txt").write_text("hello\n")
    torch.save({"t2igan": {"class_path": "t2igan.models.GANINTCLS"}, "x": Path}, "pickled.ckpt")
    Path("cut.ckpt").write_bytes(Path(ckpt).read_bytes()[:5000])
    (tmp_path / "runs").mkdir()
    (tmp_path / "bird.png").write_text("not a picture")
    (tmp_path / "taken").write_text("a file")


NOT_A_CKPT = "is not a checkpoint (torch.save's zip format) or is cut short"
#: argv after ``t2igan generate`` -> the first line it prints (in a folder that _files filled).
GENERATE_ERRORS = {
    "missing ckpt": (["--ckpt", "nope.ckpt"], f"checkpoint nope.ckpt does not exist: {HOW}"),
    "text file": (["--ckpt", "notes.txt"], f"checkpoint notes.txt {NOT_A_CKPT}"),
    "truncated": (["--ckpt", "cut.ckpt"], f"checkpoint cut.ckpt {NOT_A_CKPT}"),
    "folder": (["--ckpt", "runs"], f"checkpoint runs is a folder, not a checkpoint file: {HOW}"),
    "pickled": (["--ckpt", "pickled.ckpt"],
                "checkpoint pickled.ckpt holds pickled Python objects, not only tensors and plain "
                "data, so it is not loaded (loading it could run code): pass a checkpoint that "
                "t2igan wrote"),
    "num 0": (["--num", "0"], "--num is the number of images per caption: at least 1, got 0"),
    "num -2": (["--num", "-2"], "--num is the number of images per caption: at least 1, got -2"),
    "empty caption": (["--caption", " "], "caption 2 is empty: give every --caption some text"),
    "style image": (["--style-image", "bird.png"],
                    "style image bird.png is not an image file (PNG, JPEG, ...)"),
    "out is a file": (["--out", "taken"], "--out taken is a file: pass a folder (it is made if "
                      "missing)"),
    "device gpu": (["--device", "gpu"],
                   "--device gpu is not a torch device (cpu, cuda, cuda:1, mps, ...)"),
}  # fmt: skip


@pytest.mark.parametrize("case", GENERATE_ERRORS)
def test_generate_errors_are_one_line(case, ckpt, tmp_path, capsys):
    _files(tmp_path, ckpt)
    args, first = GENERATE_ERRORS[case]
    code, lines = fails(["generate", "--ckpt", ckpt, "--caption", "a red bird", *args], capsys)
    assert (code, lines) == (1, [f"t2igan generate: {first}", DEBUG_HINT])
    assert "weights_only" not in lines[0]  # never advice to load a file unsafely


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_generate_on_cuda_without_cuda(ckpt, capsys):
    code, lines = fails(["generate", "--ckpt", ckpt, "--caption", "a", "--device", "cuda"], capsys)
    assert (code, lines[0]) == (1, "t2igan generate: --device cuda: CUDA is not available here; "
                                   "use --device cpu")  # fmt: skip


def test_usage_errors_of_our_commands_are_one_line(capsys):
    assert fails(["prepare", "--dataset", "foo"], capsys) == (2, [
        "t2igan prepare: argument --dataset: invalid choice: 'foo' (choose from 'synthetic', "
        "'cub', 'flowers', 'mhp', 'port-hdf5') (see t2igan prepare --help)"])  # fmt: skip
    assert fails(["generate", "--ckpt", "x", "--num", "many"], capsys)[1] == [
        "t2igan generate: argument --num: invalid int value: 'many' (see t2igan generate --help)"
    ]


def test_prepare_synthetic_says_it_needs_none(capsys):
    main(["prepare", "--dataset", "synthetic"])
    assert capsys.readouterr().out == (
        "t2igan prepare: the built-in synthetic data needs no preparation (it is drawn in memory); "
        "train on it: t2igan fit --config experiments/quickstart.yaml\n"
    )


def test_debug_flag_and_variable_show_the_traceback(monkeypatch):
    with pytest.raises(FileNotFoundError, match="nope.ckpt does not exist"):
        main(["generate", "--ckpt", "nope.ckpt", "--caption", "a", "--debug"])
    monkeypatch.setenv("T2IGAN_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="nope.ckpt does not exist"):
        main(["generate", "--ckpt", "nope.ckpt", "--caption", "a"])


def test_a_bug_keeps_its_traceback():
    def buggy():
        return {}["missing"]

    with pytest.raises(KeyError):  # not an input error: never shortened to one line
        run_command("generate", buggy, debug=False)


#: argv after ``t2igan fit --config quickstart.yaml`` -> the first line it prints.
CONFIG_TYPOS = {
    "model flag": (["--model.init_args.ngff", "3"], "t2igan fit: unknown option --model."
                   "init_args.ngff: GANINTCLS takes no argument 'ngff' (did you mean ngf?)"),
    "data flag": (["--data.datset", "cub"],
                  "t2igan fit: unknown option --data.datset (did you mean --data.dataset?)"),
    "yaml key": (["--config", "typo.yaml"], "t2igan fit: unknown option --trainer.max_epoch "
                 "(did you mean --trainer.max_epochs?)"),
    "bad value": (["--trainer.max_epochs", "abc"],
                  "t2igan fit: invalid value for --trainer.max_epochs: abc"),
}  # fmt: skip


@pytest.mark.parametrize("case", CONFIG_TYPOS)
def test_config_typos_lead_with_the_useful_line(case, tmp_path, capsys):
    (tmp_path / "typo.yaml").write_text("trainer:\n  max_epoch: 3\n")
    args, first = CONFIG_TYPOS[case]
    code, lines = fails(["fit", "--config", QUICKSTART, *args], capsys)
    assert code == 2 and lines[0] == first
    assert lines[1].startswith("error: ")  # then jsonargparse's own message
    assert len(lines) < 15  # not the usage of every option first


def test_errors_raised_during_fit_are_one_line(data_root, capsys):
    code, lines = fails(["fit", "--config", QUICKSTART, "--data.dataset", "cub", "--data.root",
                         "nowhere", "--data.text_encoder", "t2igan.data.HashingEncoder"],
                        capsys)  # fmt: skip
    ours = [ln for ln in lines if ln.startswith("t2igan")]
    assert code == 1 and ours == [
        "t2igan fit: nowhere/CUB_200_2011 not found: expected the CUB-200-2011 folder (images.txt, "
        "images/, parts/ ...) there. Download and extract it with `t2igan download cub --root "
        "nowhere`."
    ]
    code, lines = fails(["fit", "--config", QUICKSTART, "--data.text_encoder.checkpoint",
                         "t2igan:birds"], capsys)  # fmt: skip
    assert code == 1 and lines[0] == ("t2igan fit: no text encoder 't2igan:birds' ships with "
                                      "t2igan; shipped: t2igan:synthetic_birds")  # fmt: skip
    code, lines = fails(["fit", "--config", QUICKSTART, "--data.dataset", "foo"], capsys)
    assert [ln for ln in lines if ln.startswith("t2igan")] == [
        "t2igan fit: unknown dataset 'foo'; choose one of synthetic, cub, flowers, mhp, port-hdf5, "
        "reed-cvpr"
    ]


def test_test_without_ckpt_path_warns_of_untrained_weights(data_root, tmp_path, capsys):
    main(["test", "--config", QUICKSTART, *TINY_DATA, "--data.root", str(data_root),
          "--model.init_args.ngf", "8", "--model.init_args.ndf", "8",
          "--trainer.limit_test_batches", "1", "--trainer.logger", "false"])  # fmt: skip
    assert capsys.readouterr().err.splitlines()[0] == (
        "t2igan test: warning: no --ckpt_path, so this scores the model's untrained (initial) "
        "weights; pass --ckpt_path RUN/checkpoints/last.ckpt"
    )
    # a checkpoint given on the command line or in a config file: no warning
    (tmp_path / "c.yaml").write_text("ckpt_path: some.ckpt\n")
    for given in (["--ckpt_path", "some.ckpt"], ["--config", "c.yaml"]):
        fails(["test", "--config", QUICKSTART, *given, "--data.datset", "x"], capsys)
        assert "warning" not in capsys.readouterr().err


def test_generate_images_are_readable_and_replace_an_earlier_run(ckpt, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("not ours")
    main(["generate", "--ckpt", ckpt, "--caption", "a red bird", "--caption", "a blue bird",
          "--num", "3", "--out", "out"])  # fmt: skip
    single = Image.open(tmp_path / "out" / "c01_i02.png")
    assert single.size == (128, 128)  # 32 px drawn, upscaled 4x
    pixels = np.asarray(single)
    assert (pixels == pixels[::4, ::4].repeat(4, 0).repeat(4, 1)).all()  # nearest: 4x4 blocks
    capsys.readouterr()
    main(["generate", "--ckpt", ckpt, "--caption", "a green bird", "--num", "2", "--out", "out"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "c00_i00.png", "c00_i01.png", "grid.png", "mine.txt"]  # fmt: skip
    assert capsys.readouterr().err.splitlines() == [
        "t2igan generate: warning: removed 4 images of an earlier run from out/ (c00_i02.png, "
        "c01_i00.png, c01_i01.png, c01_i02.png), so it holds this run's only"
    ]


def test_grid_wraps_long_captions():
    images = torch.zeros(4, 3, 32, 32)
    short = labelled_grid(images, 2, ["a red bird", "a blue bird"])
    assert short.size == (2 * 34 + 2 + MIN_LABEL_WIDTH, 2 * 34 + 2)  # rows as high as images
    long = labelled_grid(images, 2, ["a red bird " * 400, "a blue bird"])  # 4,400 characters
    assert long.width == short.width and long.height > 20 * 34  # taller, not 23,000 px wide
    text = np.asarray(long.convert("L"))[:, 2 * 34 + 2 :]
    assert (text < 128).any(axis=1).sum() > 10 * 34  # text on many lines down the column


def test_long_caption_is_cut_to_the_encoder_limit_with_a_warning(tmp_path, capsys):
    encoder = SentenceTransformerEncoder()
    long = "this bird has a red body and a blue head " * 40  # 400 words
    cut = encoder.truncate(long)
    assert long.startswith(cut) and len(cut) < len(long)
    assert encoder.truncate("a red bird") == "a red bird"
    # the encoder reads only the part kept: the rest changes nothing
    full, kept = encoder.encode([long, cut])
    assert np.allclose(full, kept, atol=1e-5)
    ckpt = save_untrained(tmp_path / "st.ckpt", encoder)
    main(["generate", "--ckpt", str(ckpt), "--caption", long, "--num", "1", "--out", "o"])
    err = capsys.readouterr().err
    assert "longer than the specified maximum" not in err  # transformers' warning: ours says it
    assert [ln for ln in err.splitlines() if ln.startswith("t2igan")] == [
        f"t2igan generate: warning: caption 1 is longer than the {encoder.max_tokens} tokens the "
        f"text encoder reads: it is cut after ...{cut[-40:]!r}"
    ]
    assert HashingEncoder().truncate(long) == long  # no limit, nothing cut


def test_console_script_prints_one_line(tmp_path):
    """The installed ``t2igan`` script: exit status and stderr as a user sees them."""
    proc = subprocess.run([T2IGAN, "generate", "--ckpt", "nope.ckpt", "--caption", "a"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"t2igan generate: checkpoint nope.ckpt does not exist: "
                                        f"{HOW}", DEBUG_HINT]  # fmt: skip
