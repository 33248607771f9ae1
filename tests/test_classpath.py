"""A class a file names is checked before anything is imported (issue 34): a checkpoint, the
text-encoder spec or style-encoder GAN it records, or a class path quoted in an error message
naming a module outside t2igan stops with one line naming the file and the class, and the module
is never imported (importing a module runs its code)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from t2igan.classpath import import_class
from t2igan.cli import main
from t2igan.cli.fit import T2IGANArgumentParser, lead_line
from t2igan.command import DEBUG_HINT
from t2igan.data import HashingEncoder
from t2igan.data.text import TextEncoder, encoder_from_spec
from t2igan.models.base import TextToImageModel
from t2igan.models.loading import load_model

from .conftest import ROOT
from .test_cli_errors import save_untrained

STYLE_CKPT = ROOT / "tests" / "checkpoints" / "pre13_style_encoder.ckpt"
REFUSED = "which is not t2igan's: refused without importing it (importing a module runs its code)"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return save_untrained(tmp_path_factory.mktemp("gan") / "gan.ckpt", HashingEncoder(64))


def crafted(source: Path, path: Path, change) -> Path:
    """A copy of the checkpoint ``source`` at ``path``, with ``change(checkpoint)`` applied."""
    checkpoint = torch.load(source, weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, path)
    return path


def marker_module(folder: Path, name: str) -> Path:
    """``folder/name.py``, which writes ``folder/name.ran`` when it is imported."""
    (folder / f"{name}.py").write_text(
        "from pathlib import Path\nPath(__file__).with_suffix('.ran').write_text('imported')\n"
        "class Model:\n    pass\n"
    )
    return folder / f"{name}.ran"


def test_a_name_outside_t2igan_is_refused_before_its_module_is_imported(tmp_path, monkeypatch):
    from t2igan.classpath import check_class_paths

    ran = marker_module(tmp_path, "issue34_marker")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=re.escape(
            f"f.ckpt names the class issue34_marker.Model, {REFUSED}; pass a file that t2igan "
            "wrote")):  # fmt: skip
        import_class("issue34_marker.Model", TextToImageModel, source="f.ckpt")
    with pytest.raises(ValueError, match="issue34_marker.Model"):
        encoder_from_spec({"class_path": "issue34_marker.Model"}, "f.ckpt")
    with pytest.raises(ValueError, match="issue34_marker.Model"):
        check_class_paths({"a": [{"b": {"class_path": "issue34_marker.Model"}}]}, source="f")
    for bad in ("os", "t2igan..x", "t2igan.models.__class__", "t2igan/models.X", 3):
        with pytest.raises(ValueError, match="is not a dotted class path"):
            import_class(bad)
    assert not ran.exists() and "issue34_marker" not in sys.modules
    # t2igan's own classes, and a class the user names (allowed=None), still load
    assert import_class("t2igan.data.HashingEncoder", TextEncoder) is HashingEncoder
    assert import_class("issue34_marker.Model", allowed=None).__name__ == "Model"
    assert ran.exists()


@pytest.mark.parametrize("where", ["model", "text encoder", "style gan"])
def test_generate_refuses_a_checkpoint_naming_this(where, ckpt, tmp_path, capsys):
    """``this`` prints the Zen of Python when imported: nothing is imported or printed."""
    source, cut = (STYLE_CKPT, "gan") if where == "style gan" else (ckpt, None)

    def change(c):
        if where == "model":
            c["t2igan"]["class_path"] = "this.Foo"
        elif where == "text encoder":
            c["hyper_parameters"]["text_encoder"]["class_path"] = "this.Foo"
        else:
            c["hyper_parameters"][cut]["class_path"] = "this.Foo"

    bad = crafted(source, tmp_path / "crafted.ckpt", change)
    with pytest.raises(SystemExit) as exit:
        main(["generate", "--ckpt", str(bad), "--caption", "a red bird", "--out", "o"])
    out, err = capsys.readouterr()
    assert exit.value.code == 1 and err.splitlines() == [
        f"t2igan generate: checkpoint {bad} names the class this.Foo, {REFUSED}; pass a file "
        "that t2igan wrote", DEBUG_HINT]  # fmt: skip
    assert "this" not in sys.modules and "Zen" not in out and not Path("o").exists()


def test_evaluate_and_the_style_encoder_refuse_it_too(ckpt, tmp_path, capsys):
    from t2igan.models.style_encoder import StyleEncoderGAN

    def change(c):
        c["hyper_parameters"]["text_encoder"]["class_path"] = "this.Foo"

    bad = crafted(ckpt, tmp_path / "crafted.ckpt", change)
    with pytest.raises(SystemExit):
        main(["evaluate", "--ckpt", str(bad), "--metrics", "fid", "--data.dataset", "synthetic"])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "warning" not in ln]
    assert lines[0] == f"t2igan evaluate: checkpoint {bad} (its text encoder) names the class this.Foo, {REFUSED}; "\
        "pass a file that t2igan wrote"  # fmt: skip
    with pytest.raises(ValueError, match=f"generator_ckpt {bad} names the class this"):
        StyleEncoderGAN(str(bad))
    with pytest.raises(ValueError, match="this.Foo"):
        load_model(bad)
    assert "this" not in sys.modules


def test_an_option_error_naming_a_class_imports_nothing():
    """The lead line of a jsonargparse error quoting a class path looks the class up only if
    its module is imported already (it was, when jsonargparse wrote the message)."""
    parser = T2IGANArgumentParser()
    message = ('Parser key "model":\n  Problem with given class_path \'this.Foo\': Option '
               "'ngff' is not accepted")  # fmt: skip
    assert lead_line(parser, message) == "unknown option --model.init_args.ngff: Foo takes no "\
        "argument 'ngff'"  # fmt: skip
    assert "this" not in sys.modules
    message = message.replace("this.Foo", "t2igan.models.GANINTCLS")
    assert lead_line(parser, message).endswith("GANINTCLS takes no argument 'ngff' (did you mean "
                                               "ngf?)")  # fmt: skip


def test_python_m_generate_does_not_run_a_module_from_the_current_folder(ckpt, tmp_path):
    """Under ``python -m``, the current folder is first on sys.path: a checkpoint naming
    ``evilmod.Model`` would import ./evilmod.py."""
    ran = marker_module(tmp_path, "evilmod")

    def change(c):
        c["t2igan"]["class_path"] = "evilmod.Model"

    crafted(ckpt, tmp_path / "crafted.ckpt", change)
    proc = subprocess.run([sys.executable, "-m", "t2igan.cli", "generate", "--ckpt",
                           "crafted.ckpt", "--caption", "a red bird"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert not ran.exists()
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        f"t2igan generate: checkpoint crafted.ckpt names the class evilmod.Model, {REFUSED}; "
        "pass a file that t2igan wrote", DEBUG_HINT]  # fmt: skip


def test_evaluate_refuses_a_run_config_naming_a_foreign_text_encoder(ckpt, tmp_path, capsys):
    """evaluate reads the run's config.yaml beside checkpoints/: its data.text_encoder class is
    checked before jsonargparse would import it."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    copy = run / "checkpoints" / "last.ckpt"
    copy.write_bytes(ckpt.read_bytes())
    (run / "config.yaml").write_text("data:\n  dataset: synthetic\n  text_encoder:\n"
                                     "    class_path: this.Encoder\n")  # fmt: skip
    with pytest.raises(SystemExit):
        main(["evaluate", "--ckpt", str(copy), "--metrics", "fid"])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if "warning" not in ln]
    assert lines[0].startswith(f"t2igan evaluate: {run / 'config.yaml'} names the class "
                               "this.Encoder, which is not t2igan's")  # fmt: skip
    assert "this" not in sys.modules
