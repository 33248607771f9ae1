"""MPII Human Pose (Andriluka et al., CVPR 2014) as GAWWN's "MHP" dataset (Reed et al., NIPS 2016,
arXiv:1610.02454): people cropped around their centre, 16 joints plus a head point.

Annotations come from either form:

* Newell's stacked-hourglass HDF5 files, ``annot/train.h5`` and ``annot/valid.h5`` (``imgname``,
  ``part`` (N, 16, 2), ``visible``, ``center``, ``scale``, ``person``). Train reads ``train.h5``;
  val and test read ``valid.h5`` (Newell's ``test.h5`` has no joints).
* The official ``mpii_human_pose_v1_u12_1.mat`` (``RELEASE.annolist(i).image.name``,
  ``.annorect(p).objpos``, ``.scale``, ``.annopoints.point``, head box ``x1, y1, x2, y2``) for
  ``img_train`` images; its centre and scale are adjusted as Newell's files are (centre y + 15 s,
  scale x 1.25) so that both forms crop alike. Every tenth image (``annolist`` index divisible
  by 10) is held out as val and test: t2igan's documented split.

Each person is cropped to a square of side 200 x scale around its centre (the MPII scale is the
person's height / 200 pixels); the part of the square outside the photo is black. The 17th
keypoint is the head centre GAWWN adds: the centre of the head box from the ``.mat``, or the
midpoint of upper neck and head top for the HDF5 files (which have no head box). Joints outside
the crop are invisible (0, 0, 0).

GAWWN's MHP captions were never released, so captions come from a user file in JSON lines, one
object per image: ``{"image": "005808361.jpg", "captions": ["a man ...", ...]}``, with an
optional ``"person"`` (the 0-based person index within the image) when people in one image
differ. Every person in an image is one class (so "wrong" images are other photos).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from t2igan.data.contract import Split
from t2igan.data.files import (
    EmptySplitError,
    ImageFiles,
    MissingDataError,
    image_size,
    require,
)

log = logging.getLogger(__name__)

#: MPII's joint order with sided names (so a flip swaps them), then GAWWN's head point.
MPII_PARTS = (
    "right ankle", "right knee", "right hip", "left hip", "left knee", "left ankle", "pelvis",
    "thorax", "upper neck", "head top", "right wrist", "right elbow", "right shoulder",
    "left shoulder", "left elbow", "left wrist", "head",
)  # fmt: skip
MAT_NAME = "mpii_human_pose_v1_u12_1.mat"


def read_caption_file(path: Path) -> dict[tuple[str, int | None], list[str]]:
    """The JSON-lines caption file: {(image, person or None): captions}."""
    out = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key = (str(row["image"]), row.get("person"))
            captions = [str(c).strip() for c in row["captions"]]
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path}, line {n}: expected {{\"image\": ..., \"captions\": "
                             f"[...]}} ({err})") from err  # fmt: skip
        if not captions:
            raise ValueError(f"{path}, line {n}: no captions for {key[0]}")
        out[key] = captions
    return out


def read_newell_h5(path: Path) -> dict:
    """Newell's annotation file as arrays: names, joints (N, 16, 3), centre, scale, person."""
    import h5py

    with h5py.File(path, "r") as f:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["imgname"][()]]
        part, visible = f["part"][()], f["visible"][()]
        joints = np.concatenate([part, visible[..., None]], axis=-1)
        # Unannotated joints are stored at (0, 0): never visible.
        joints[(part <= 0).all(-1), 2] = 0
        head = (joints[:, 8, :2] + joints[:, 9, :2]) / 2  # midpoint of upper neck and head top
        head_vis = np.minimum(joints[:, 8, 2], joints[:, 9, 2])
        person = f["person"][()].astype(int) if "person" in f else np.zeros(len(names), int)
        return {
            "names": names,
            "joints": np.concatenate([joints, np.c_[head, head_vis][:, None]], axis=1),
            "center": f["center"][()],
            "scale": f["scale"][()],
            "person": person,
        }


def read_mpii_mat(path: Path, held_out: bool) -> dict:
    """The official annotation for ``img_train`` people with joints (``held_out``: the tenth of
    images kept for val/test, else the rest)."""
    from scipy.io import loadmat

    release = loadmat(path, struct_as_record=False, squeeze_me=True)["RELEASE"]
    rows = {"names": [], "joints": [], "center": [], "scale": [], "person": []}
    for i, (ann, train) in enumerate(zip(np.atleast_1d(release.annolist),
                                         np.atleast_1d(release.img_train))):  # fmt: skip
        if not train or (i % 10 == 0) != held_out:
            continue
        for p, rect in enumerate(np.atleast_1d(getattr(ann, "annorect", []))):
            points = getattr(getattr(rect, "annopoints", None), "point", None)
            if points is None or not hasattr(rect, "objpos"):
                continue
            joints = np.zeros((17, 3))
            for pt in np.atleast_1d(points):
                vis = getattr(pt, "is_visible", 1)
                vis = 1 if isinstance(vis, np.ndarray) and vis.size == 0 else int(vis)
                joints[int(pt.id)] = (float(pt.x), float(pt.y), float(vis))
            joints[16] = ((rect.x1 + rect.x2) / 2, (rect.y1 + rect.y2) / 2, 1.0)
            s = float(rect.scale)
            rows["names"].append(str(ann.image.name))
            rows["joints"].append(joints)
            rows["center"].append((float(rect.objpos.x), float(rect.objpos.y) + 15 * s))
            rows["scale"].append(1.25 * s)
            rows["person"].append(p)
    return {k: (v if k == "names" else np.array(v)) for k, v in rows.items()}


class MPIIReader:
    """Reader for MPII human pose in GAWWN's form (see the module docstring).

    Args:
        root: the MPII folder, holding ``images/`` and ``annot/{train,valid}.h5`` or the official
            ``.mat``.
        captions: the JSON-lines caption file; default ``root/captions.jsonl``.
        annotations: the official ``.mat`` or one HDF5 file to read for every split; default:
            Newell's ``annot/train.h5`` / ``annot/valid.h5``, else ``root/`` + the official name.
        images: the image folder; default ``root/images``.
        skip_missing: leave out, with a logged warning, people whose image or captions are
            missing; by default that is an error.
    """

    name = "mhp"

    def __init__(
        self,
        root: str | Path,
        captions: str | Path | None = None,
        annotations: str | Path | None = None,
        images: str | Path | None = None,
        skip_missing: bool = False,
    ) -> None:
        self.root = require(Path(root), "the MPII folder (images/, annot/)",
                            "Download MPII from human-pose.mpi-inf.mpg.de.")  # fmt: skip
        self.images = Path(images) if images else self.root / "images"
        self.annotations = Path(annotations) if annotations else None
        caption_path = Path(captions) if captions else self.root / "captions.jsonl"
        require(caption_path, "a JSON-lines caption file, one {\"image\": ..., \"captions\": "
                "[...]} per line (GAWWN's MHP captions were never released)",
                "Write one and pass it as captions.")  # fmt: skip
        self.caption_path = caption_path
        self.captions = read_caption_file(caption_path)
        self.skip_missing = skip_missing

    def _annotation(self, split: str) -> dict:
        if self.annotations is not None:
            path = require(self.annotations, "the MPII annotation", "Pass an existing file.")
        else:
            h5 = self.root / "annot" / ("train.h5" if split == "train" else "valid.h5")
            path = h5 if h5.exists() else self.root / MAT_NAME
            require(path, f"Newell's {h5.name} or the official {MAT_NAME}",
                    "Download the annotations and pass annotations.")  # fmt: skip
        if path.suffix == ".mat":
            return read_mpii_mat(path, held_out=split != "train")
        return read_newell_h5(path)

    def load(self, split: str) -> Split:
        """The people of ``split``, cropped, with captions and 17 keypoints."""
        if split not in ("train", "val", "test"):
            raise ValueError(f"unknown split {split!r}; choose train, val or test")
        ann = self._annotation(split)
        keep, captions, missing = [], [], []
        for i, (name, person) in enumerate(zip(ann["names"], ann["person"])):
            caps = self.captions.get((name, int(person))) or self.captions.get((name, None))
            path = self.images / name
            if caps is None or not path.exists():
                missing.append(str(path) if caps is not None else f"captions of {name}")
                continue
            keep.append(i)
            captions.append(caps)
        if missing:
            if not self.skip_missing:
                raise MissingDataError(
                    f"{len(missing)} of {len(ann['names'])} MPII {split} people lack their "
                    f"image or captions ({self.caption_path}), e.g. {missing[0]}. Set "
                    "skip_missing to use the ones that are there."
                )
            log.warning("MPII %s: skipping %d of %d people without image or captions, e.g. %s",
                        split, len(missing), len(ann["names"]), missing[0])  # fmt: skip
        if not keep:
            raise EmptySplitError(
                f"MPII {split} split has no people with images and captions", split
            )
        keep = np.array(keep)
        names = [ann["names"][i] for i in keep]
        paths = [self.images / n for n in names]
        side = 200.0 * ann["scale"][keep]
        centre = ann["center"][keep]
        windows = np.round(np.c_[centre - side[:, None] / 2, centre + side[:, None] / 2])
        joints = ann["joints"][keep].astype(np.float64)
        sizes = np.array([image_size(p) for p in paths], dtype=np.float64)
        vis = joints[..., 2] > 0
        outside = vis & ((joints[..., :2] < 0) | (joints[..., :2] > sizes[:, None])).any(-1)
        if outside.any():
            i, k = (int(v[0]) for v in np.nonzero(outside))
            raise ValueError(f"{int(outside.sum())} visible joints lie outside their image, e.g. "
                             f"{MPII_PARTS[k]!r} of {paths[i]} at {tuple(joints[i, k, :2])}")  # fmt: skip
        extent = (windows[:, 2:] - windows[:, :2])[:, None]
        joints[..., :2] = (joints[..., :2] - windows[:, None, :2]) / extent
        inside = ((joints[..., :2] >= 0) & (joints[..., :2] <= 1)).all(-1)
        joints[~(vis & inside)] = 0.0
        unique = {n: k for k, n in enumerate(dict.fromkeys(names))}
        return Split(
            images=ImageFiles(paths, windows),
            captions=captions,
            labels=np.array([unique[n] for n in names]),
            names=[f"{n}#{int(p)}" for n, p in zip(names, ann["person"][keep])],
            keypoints=joints.astype(np.float32),
            part_names=MPII_PARTS,
        )

    def sources(self) -> list[Path]:
        """The files a cache built from this reader depends on."""
        out = [self.caption_path]
        if self.annotations is not None:
            return [*out, self.annotations]
        for name in ("annot/train.h5", "annot/valid.h5", MAT_NAME):
            if (self.root / name).exists():
                out.append(self.root / name)
        return out
