"""The papers' files: StackGAN pickles, Reed's .t7 tables, the PyTorch port's HDF5."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2igan.cli import main
from t2igan.data import T2IDataModule
from t2igan.data.cub import CUBReader
from t2igan.data.paper_files import (
    STACKGAN_EMB,
    PortHDF5Reader,
    PrecomputedEncoder,
    UnsafePickleError,
    decode_reed_chars,
    embeddings_dim,
    read_pickle,
    read_reed_t7,
    stackgan_split,
)

from .conftest import SHARED_DATA
from .data_fixtures import (
    cub_keys,
    make_cub,
    write_port_hdf5,
    write_reed_cvpr,
    write_reed_t7,
    write_stackgan,
)


@pytest.fixture
def cub(tmp_path):
    return make_cub(tmp_path / "raw")


def _stackgan(cub, folder, dim=8):
    keys = cub_keys(cub)
    test = [k for k in keys if k.startswith(("001", "004"))]
    train = [k for k in keys if k not in test]
    emb = {s: write_stackgan(folder, s, ks, [int(k[:3]) for k in ks], dim)
           for s, ks in (("train", train), ("test", test))}  # fmt: skip
    return {"train": train, "test": test}, emb


def test_stackgan_embeddings_align_with_images(tmp_path, cub):
    keys, emb = _stackgan(cub, tmp_path / "stackgan")
    names, classes, loaded = stackgan_split(tmp_path / "stackgan", "train")
    assert names == keys["train"] and loaded.shape == (6, 10, 8)
    assert classes.tolist() == [int(k[:3]) for k in keys["train"]]
    split = CUBReader(cub, embeddings=tmp_path / "stackgan").load("test")
    for name, e in zip(split.names, split.caption_emb):
        np.testing.assert_array_equal(e, emb["test"][keys["test"].index(name)])
    assert embeddings_dim(tmp_path / "stackgan") == 8


def test_stackgan_count_mismatch_is_an_error(tmp_path, cub):
    keys = cub_keys(cub)[:4]
    write_stackgan(tmp_path / "sg", "train", keys, [1] * 4, count=3)
    with pytest.raises(ValueError, match=r"\(3, 10, 8\) for 4 names"):
        stackgan_split(tmp_path / "sg", "train")


def test_datamodule_with_precomputed_embeddings(tmp_path, cub):
    _stackgan(cub, tmp_path / "sg", dim=12)
    dm = T2IDataModule("cub", root=str(tmp_path), source=str(cub), embeddings=str(tmp_path / "sg"),
                       image_size=32, batch_size=4, use_cache=False)  # fmt: skip
    assert dm.text_dim == 12 and isinstance(dm.text_encoder, PrecomputedEncoder)
    assert dm.text_encoder_spec["init_args"]["dim"] == 12
    dm.setup("fit")
    ds = dm.datasets["train"]
    row = float(ds.emb[0][0, 0])  # the fixture fills image r's caption k with r + k / 10
    assert row == int(row) and torch.all(ds.emb[0][:, 0] == row + torch.arange(10) / 10)
    with pytest.raises(RuntimeError, match="cannot be embedded"):
        dm.text_encoder.encode(["a red bird"])


def test_reed_t7(tmp_path):
    captions = ["this bird is red.", "a small bird, with a black beak!"]
    txt = np.arange(2 * 6, dtype=np.float32).reshape(2, 6)
    path = tmp_path / "cub_icml" / "001.Bird_1" / "Bird_1_0000_101.t7"
    write_reed_t7(path, "001.Bird_1/Bird_1_0000_101.jpg", txt, captions)
    table = read_reed_t7(path)
    assert table["img"] == "001.Bird_1/Bird_1_0000_101.jpg"
    np.testing.assert_array_equal(table["txt"], txt)
    assert table["captions"] == captions
    assert decode_reed_chars(np.array([[1, 2], [3, 0]])) == ["ac", "b"]
    assert embeddings_dim(tmp_path / "cub_icml") == 6


def test_reed_t7_embeddings_for_cub(tmp_path, cub):
    folder = tmp_path / "cub_icml"
    for r, key in enumerate(cub_keys(cub)):
        write_reed_t7(folder / f"{key}.t7", key + ".jpg", np.full((10, 4), r, np.float32),
                      ["a bird."] * 10)  # fmt: skip
    split = CUBReader(cub, embeddings=folder).load("train")
    for name, e in zip(split.names, split.caption_emb):
        assert e.shape == (10, 4) and e[0, 0] == cub_keys(cub).index(name)
    (folder / f"{split.names[0]}.t7").unlink()
    with pytest.raises(FileNotFoundError, match="no Reed .t7 embeddings"):
        CUBReader(cub, embeddings=folder).load("train")


def test_port_hdf5(tmp_path):
    path = tmp_path / "birds.hdf5"
    write_port_hdf5(path, {
        "a_img": ("001.Black_footed_Albatross", ["cap a0", "cap a1", "cap a2"]),
        "b_img": ("002.Laysan_Albatross", ["cap b0", "cap b1"]),
        "v_img": ("003.Sooty_Albatross", ["cap v0"]),
        "vb_img": ("004.Groove_billed_Ani", ["cap vb0"]),
    })  # fmt: skip
    reader = PortHDF5Reader(path)
    train = reader.load("train")
    assert train.names == ["a_img", "b_img"] and train.labels.tolist() == [0, 1]
    assert train.captions[0] == ["cap a0", "cap a1", "cap a2"]
    np.testing.assert_allclose(train.caption_emb[1][:, 0], [1.0, 1.1])  # n + k / 10
    assert train.images[0].shape == (30, 40, 3)
    assert reader.load("val").names == ["v_img", "vb_img"] and reader.dim == 8
    dm = T2IDataModule("port-hdf5", root=str(tmp_path), source=str(path), image_size=16,
                       batch_size=2)  # fmt: skip
    assert dm.text_dim == 8
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape == (2, 3, 16, 16) and batch["text_emb"].shape == (2, 8)


# --- the papers' pickles are read with a restricted unpickler -------------------------------


class _Touch:
    """Unpickling this creates ``path``: what a crafted pickle could do (or worse)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _evil(path, marker, protocol=2, wrap=list):
    import pickle

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(wrap([_Touch(marker)]), protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_malicious_pickle_is_refused_unrun(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = _evil(tmp_path / "x.pickle", marker, protocol)
    with pytest.raises(UnsafePickleError, match=r"x\.pickle.*global io\.open"):
        read_pickle(path)
    assert not marker.exists()


def test_malicious_embeddings_do_not_run_while_the_datamodule_is_built(tmp_path, cub):
    """A crafted char-CNN-RNN-embeddings.pickle used to run code in T2IDataModule(...)."""
    marker = tmp_path / "pwned"
    _stackgan(cub, tmp_path / "sg")
    _evil(tmp_path / "sg" / "test" / STACKGAN_EMB, marker)
    with pytest.raises(UnsafePickleError, match=f"{STACKGAN_EMB}.*global io.open"):
        T2IDataModule("cub", root=str(tmp_path), source=str(cub), embeddings=str(tmp_path / "sg"),
                      image_size=32, use_cache=False)  # fmt: skip
    _evil(tmp_path / "sg" / "train" / "filenames.pickle", marker, protocol=0)
    with pytest.raises(UnsafePickleError, match="filenames.pickle"):
        stackgan_split(tmp_path / "sg", "train")
    assert not marker.exists()


def test_malicious_filenames_pickle_beside_cub_does_not_run(tmp_path, cub, capsys):
    """The CUB reader reads StackGAN's filenames.pickle by itself when it sits beside the data."""
    marker = tmp_path / "pwned"
    _evil(cub.parent / "train" / "filenames.pickle", marker)
    with pytest.raises(UnsafePickleError, match=r"train/filenames\.pickle.*global io\.open"):
        CUBReader(cub).load("train")
    with pytest.raises(SystemExit):
        main(["prepare", "--dataset", "cub", "--root", str(tmp_path), "--source", str(cub)])
    first = capsys.readouterr().err.splitlines()[0]
    assert first.startswith("t2igan prepare: ") and "refused to load this pickle" in first
    assert not marker.exists()


class _Harmless:
    pass


def test_other_globals_are_refused(tmp_path):
    import pickle

    for obj, name in ((_Harmless(), "_Harmless"), ({1, 2}, "set"), (complex(1, 2), "complex")):
        path = tmp_path / "g.pickle"
        path.write_bytes(pickle.dumps([obj], protocol=2))
        with pytest.raises(UnsafePickleError, match=name):
            read_pickle(path)
    path.write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    with pytest.raises(UnsafePickleError, match=r"os\.system"):  # the Python 2 name
        read_pickle(path)
    path.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a readable pickle"):
        read_pickle(path)


def _layouts(keys, dim=6):
    """StackGAN's files as they are found: (N, 10, D), (N, D) or a list of (10, D) arrays."""
    emb = np.arange(len(keys) * 10 * dim, dtype=np.float32).reshape(len(keys), 10, dim)
    return {"array": (emb, emb), "one per image": (emb[:, 0], emb[:, :1]),
            "list": (list(emb), emb)}  # fmt: skip


@pytest.mark.parametrize("writer", ["py2-protocol-2", "py2-protocol-2-unicode", "protocol-0",
                                    "protocol-2", "protocol-4", "protocol-5"])  # fmt: skip
@pytest.mark.parametrize("layout", ["array", "one per image", "list"])
def test_pickles_of_the_real_structure_load(tmp_path, cub, writer, layout):
    """Python 2 / numpy 1.x protocol 2 pickles (latin1 strings, numpy.core globals) and pickles
    re-saved by Python 3 / numpy 2, in every layout stackgan_split and the CUB reader accept."""
    import pickle

    from .data_fixtures import py2_pickle

    keys = cub_keys(cub)
    test = [k for k in keys if k.startswith(("001", "004"))]
    written, expected = _layouts(test)[layout]
    classes = [np.int64(int(k[:3])) for k in test]  # numpy scalars, as in train/class_info

    def dump(name, obj):
        path = tmp_path / "sg" / "test" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if writer.startswith("py2"):
            py2_pickle(path, obj, unicode_text=writer.endswith("unicode"))
        else:
            path.write_bytes(pickle.dumps(obj, protocol=int(writer[-1])))

    dump("filenames.pickle", list(test))
    dump("class_info.pickle", classes)
    dump(STACKGAN_EMB, written)
    names, got_classes, emb = stackgan_split(tmp_path / "sg", "test")
    assert names == test and got_classes.tolist() == [int(c) for c in classes]
    np.testing.assert_array_equal(emb, expected)
    assert embeddings_dim(tmp_path / "sg") == 6
    # the same files beside the CUB root define the class split
    for name in ("filenames.pickle", "class_info.pickle"):
        (cub.parent / "test").mkdir(exist_ok=True)
        (cub.parent / "test" / name).write_bytes((tmp_path / "sg" / "test" / name).read_bytes())
    split = CUBReader(cub, embeddings=tmp_path / "sg").load("test")
    assert split.names == test
    for name, e in zip(split.names, split.caption_emb):
        np.testing.assert_array_equal(e, expected[test.index(name)])


def test_latin1_text_of_python2_pickles(tmp_path):
    from .data_fixtures import py2_pickle

    path = py2_pickle(tmp_path / "f.pickle", ["001.Bird/Caf\xe9_0001", {"k": [1, 2.5, b"\xff"]}])
    assert read_pickle(path) == ["001.Bird/Caf\xe9_0001", {"k": [1, 2.5, "\xff"]}]


@pytest.mark.skipif(not (SHARED_DATA / "birds" / "train").exists(), reason="no shared real data")
def test_real_stackgan_pickles_load_restricted():
    import pickle

    for split in ("train", "test"):
        for name in ("filenames.pickle", "class_info.pickle"):
            path = SHARED_DATA / "birds" / split / name
            with open(path, "rb") as f:
                plain = pickle.load(f, encoding="latin1")  # the real files, trusted here
            assert read_pickle(path) == plain and len(plain) in (8855, 2933)


def _cvpr(tmp_path):
    classes = {
        "001.Red_bird.t7": [["a red bird."], ["a red bird, small."], ["red."]],
        "002.Blue_bird.t7": [["a blue bird."], ["blue!", "very blue."]],
        "003.Green_bird.t7": [["a green bird."], ["green."]],
        "004.Black_bird.t7": [["a black bird."]],
    }
    root = tmp_path / "cvpr2016_cub"
    return root, write_reed_cvpr(root, classes, train=[1, 3])


def test_reed_cvpr_features_and_captions(tmp_path):
    """Reed's char-CNN-RNN data: features (N, F, 10) become (10, F) per image, captions are
    decoded (empty columns dropped), classes split by trainvalids.txt, val is test."""
    from t2igan.data.paper_files import ReedCVPRReader

    root, feats = _cvpr(tmp_path)
    reader = ReedCVPRReader(root)
    train, test = reader.load("train"), reader.load("test")
    assert train.names == ["001.Red_bird/1", "001.Red_bird/2", "001.Red_bird/3",
                           "003.Green_bird/1", "003.Green_bird/2"]  # fmt: skip
    assert list(train.labels) == [1, 1, 1, 3, 3] and list(test.labels) == [2, 2, 4]
    assert train.captions[1] == ["a red bird, small."] and test.captions[1] == [
        "blue!",
        "very blue.",
    ]
    assert train.images is None and train.image_features[4].shape == (10, 16)
    np.testing.assert_array_equal(train.image_features[4], feats["003.Green_bird.t7"][1].T)
    assert reader.load("val").names == test.names


def test_reed_cvpr_trains_the_sje_encoder_on_view_features(tmp_path):
    import lightning as L

    from t2igan.data import HashingEncoder
    from t2igan.models import GANINTCLS, CharCNNRNNSJE

    root, _ = _cvpr(tmp_path)
    dm = T2IDataModule(dataset="reed-cvpr", root=str(tmp_path), batch_size=2,
                       sampler="distinct_classes", text_encoder=HashingEncoder(dim=8))  # fmt: skip
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image_features"].shape == (2, 10, 16) and "images" not in batch
    assert len(set(batch["labels"].tolist())) == 2 and "images" not in dm.caption_examples("val", 2)
    model = CharCNNRNNSJE(cnn_dim=16, emb_dim=16, conv_widths=(16, 16))
    trainer = L.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(model, datamodule=dm)
    assert model.image_side == "features"
    feats = batch["image_features"]
    assert torch.equal(model.eval().embed_images(batch), feats[:, 0])  # view 1 at test
    drawn = model.train().embed_images(batch)  # one of the 10 views of each image in training
    assert all(any(torch.equal(d, v) for v in f) for d, f in zip(drawn, feats))
    gan = GANINTCLS(text_dim=8, image_size=32, ngf=4, ndf=4)
    with pytest.raises(ValueError, match="reed-cvpr has image features only"):
        L.Trainer(max_steps=1, logger=False, enable_checkpointing=False).fit(gan, datamodule=dm)


def test_reed_cvpr_bad_folders_name_the_file(tmp_path):
    from t2igan.data.paper_files import ReedCVPRReader
    from t2igan.data.t7 import save_t7, tensor

    with pytest.raises(FileNotFoundError, match="manifest.txt not found.*reedscot/cvpr2016"):
        ReedCVPRReader(tmp_path / "nowhere")
    root, _ = _cvpr(tmp_path)
    (root / "trainvalids.txt").write_text("1\n9\n")
    with pytest.raises(ValueError, match="trainvalids.txt: line 9 is not in"):
        ReedCVPRReader(root)
    (root / "trainvalids.txt").write_text("1\n")
    save_t7(root / "images" / "001.Red_bird.t7", tensor(np.zeros((2, 16, 10), np.float32)))
    with pytest.raises(ValueError, match="001.Red_bird.t7 has 2 images but .*text_c10.* for 3"):
        ReedCVPRReader(root).load("train")
    (root / "images" / "001.Red_bird.t7").write_text("not torch")
    with pytest.raises(ValueError, match="images/001.Red_bird.t7: not a readable Torch7 file"):
        ReedCVPRReader(root).load("train")
