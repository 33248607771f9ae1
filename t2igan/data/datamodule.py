"""The one LightningDataModule shared by every paper model."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

from t2igan.data import prepare as cache
from t2igan.data.contract import Split
from t2igan.data.dataset import TextImageDataset
from t2igan.data.files import EmptySplitError
from t2igan.data.paper_files import PrecomputedEncoder, embeddings_dim
from t2igan.data.sampler import EpochSampler
from t2igan.data.synthetic import SyntheticBirds
from t2igan.data.text import SentenceTransformerEncoder, TextEncoder, embed_captions
from t2igan.data.tokens import Vocabulary, filter_caption_lengths, words

log = logging.getLogger(__name__)

DATASETS = ("synthetic", "cub", "flowers", "mhp", "port-hdf5", "reed-cvpr")
WRONG_MODES = ("class", "shift")
SAMPLERS = ("shuffle", "class_uniform", "distinct_classes")


def shift_collate(items: list[dict]) -> dict:
    """Collate, then pair each image with the next one's caption as the mismatched pair:
    StackGAN's in-batch shift (``wrong_images`` = the batch rolled by one)."""
    batch = default_collate(items)
    batch["wrong_images"] = batch["images"].roll(1, 0)
    return batch


class T2IDataModule(L.LightningDataModule):
    """Text-image pairs for every t2igan model, from one of the supported datasets.

    Batches follow :class:`t2igan.data.contract.Batch`. Caption embeddings are computed with
    ``text_encoder`` and cached under ``root/<dataset>/``, or read from the papers' files
    (``embeddings``). Real datasets are read from the cache ``t2igan prepare`` writes under
    ``root/<dataset>/`` when it is there and up to date, else from the raw files (slower; the
    log says which command builds the cache). See docs/data.md.

    Args:
        dataset: which dataset to read: ``synthetic`` (built in, drawn on the fly), ``cub``
            (CUB-200-2011 with Reed's captions), ``flowers`` (Oxford-102 with Reed's captions),
            ``mhp`` (MPII human pose, captions from a JSON-lines file), ``port-hdf5`` (a
            ``birds.hdf5``/``flowers.hdf5`` file of the PyTorch port, given as ``source``) or
            ``reed-cvpr`` (Reed's char-CNN-RNN training data: GoogLeNet features and captions,
            no images; only the DS-SJE text encoder trains on it).
        root: folder that holds the datasets (and their caches).
        source: the dataset's own folder or file; default: looked up under ``root``
            (``CUB_200_2011`` or ``birds/CUB_200_2011``, ``flowers``, ``mpii``, ``birds.hdf5``,
            ``cvpr2016_cub``).
        split: cub and flowers: ``class`` (the papers' class-disjoint split, the default) or
            ``official`` (the datasets' image-level split).
        bbox_crop: cub: crop around the bounding box as StackGAN does (side 1.5 x max(w, h)).
        captions_per_image: captions required per image (the first are kept; fewer is an
            error); default: the reader's (10 for cub and flowers).
        captions: where the captions are: a ``text_c10`` folder (cub, flowers; default: found
            beside the images) or the JSON-lines caption file (mhp).
        embeddings: the papers' precomputed caption embeddings instead of ``text_encoder``: a
            StackGAN folder with ``{train,test}/char-CNN-RNN-embeddings.pickle`` or a folder of
            Reed's ``.t7`` files (cub, flowers).
        skip_missing: leave out (and log) images whose image or caption file is missing, to use
            a partial copy; by default that is an error.
        wrong_mode: mismatched images for the matching-aware discriminator: ``class`` (a real
            image of another class, Reed et al.) or ``shift`` (the batch rolled by one, StackGAN).
        use_cache: read the ``t2igan prepare`` cache when it is present and up to date.
        sampler: training order: ``shuffle`` (every image once an epoch, in random order) or
            ``class_uniform`` (a class uniformly, then one of its images, with replacement: the
            icml2016 Lua loader's draw; see :class:`~t2igan.data.sampler.EpochSampler`) or
            ``distinct_classes`` (minibatches of ``batch_size`` distinct classes, one image each:
            the SJE text-encoder trainer's; a batch size above the number of training classes is
            lowered to it, with a warning).
        image_size: side of the images the model sees.
        load_size: images are resized to this side, then cropped to ``image_size`` (Reed et al.:
            76 for 64). None: no crop.
        flip: random horizontal flips for training (boxes, keypoints and left/right parts follow).
        num_captions: caption embeddings averaged per image (Reed et al.: 4); 1 gives one random
            caption per image (StackGAN).
        batch_size: images per batch.
        num_workers: DataLoader worker processes.
        text_encoder: how captions are embedded; default all-MiniLM-L6-v2 (sentence-transformers).
            Not used with ``embeddings`` or ``port-hdf5``, which bring their own.
        num_images: synthetic only: training images.
        num_eval_images: synthetic only: images in the validation and in the test split.
        seed: synthetic only: dataset seed.
        max_words: captions are cut to this many words in ``tokens`` (the word ids that
            alignDRAW reads; the other models ignore them).
        caption_words: keep only training captions of ``lo <= words < hi`` words, and the
            images that have one (Mansimov et al.'s COCO filter is ``[7, 30]``); None: all.
            It changes the training split of every model, not only the tokens.
        images: False gives batches without ``images`` and ``wrong_images``, and no image is
            decoded: for models that read only the annotations and captions (the GAWWN
            keypoint generator, as the authors' ``cub_keypoint_only`` loader). A model that
            draws images stops with an error naming this option.
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str = "data",
        image_size: int = 64,
        load_size: int | None = None,
        flip: bool = False,
        num_captions: int = 4,
        batch_size: int = 64,
        num_workers: int = 0,
        text_encoder: TextEncoder | None = None,
        num_images: int = 6000,
        num_eval_images: int = 512,
        seed: int = 0,
        source: str | None = None,
        split: str | None = None,
        bbox_crop: bool = False,
        captions_per_image: int | None = None,
        captions: str | None = None,
        embeddings: str | None = None,
        skip_missing: bool = False,
        wrong_mode: str = "class",
        use_cache: bool = True,
        sampler: str = "shuffle",
        max_words: int = 30,
        caption_words: tuple[int, int] | None = None,
        images: bool = True,
    ) -> None:
        super().__init__()
        self.images = images
        sizes = {"image_size": image_size, "batch_size": batch_size, "num_captions": num_captions}
        if dataset == "synthetic":  # the other datasets have the images they have
            sizes.update(num_images=num_images, num_eval_images=num_eval_images)
        for name, value in sizes.items():
            if value < 1:
                raise ValueError(f"--data.{name} must be at least 1, got {value}")
        if load_size is not None and load_size < image_size:
            raise ValueError(f"--data.load_size {load_size} is smaller than --data.image_size "
                             f"{image_size}: images are resized to load_size, then cropped to "
                             "image_size (leave load_size out for no crop)")  # fmt: skip
        if num_workers < 0:
            raise ValueError(f"--data.num_workers must be 0 (load in the main process) or more, "
                             f"got {num_workers}")  # fmt: skip
        if captions_per_image is not None and captions_per_image < 1:
            raise ValueError(f"--data.captions_per_image must be at least 1, got "
                             f"{captions_per_image}")  # fmt: skip
        if max_words < 1:
            raise ValueError(f"--data.max_words must be at least 1, got {max_words}")
        if caption_words is not None and not (0 <= caption_words[0] < caption_words[1]):
            raise ValueError(f"--data.caption_words [lo, hi] needs 0 <= lo < hi, got "
                             f"{list(caption_words)}")  # fmt: skip
        self.max_words = max_words
        self.caption_words = caption_words
        self._vocabulary: Vocabulary | None = None
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
        if wrong_mode not in WRONG_MODES:
            raise ValueError(f"unknown wrong_mode {wrong_mode!r}; choose one of {WRONG_MODES}")
        if sampler not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        self.sampler = sampler
        self.dataset = dataset
        self.root = Path(root)
        self.image_size = image_size
        self.load_size = load_size
        self.flip = flip
        self.num_captions = num_captions
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.wrong_mode = wrong_mode
        self.use_cache = use_cache
        self.datasets: dict[str, TextImageDataset] = {}
        self.train_sampler: EpochSampler | None = None
        self._resume: tuple[int, int] | None = None  # (epoch seed, items done) from a checkpoint
        if dataset == "synthetic":
            self.reader = SyntheticBirds(load_size or image_size, num_images, num_eval_images, seed)
            self.text_encoder = text_encoder or SentenceTransformerEncoder()
            return
        self.reader = None  # built on first use: reading the annotations takes a moment
        self.source = cache.find_source(dataset, root, source)
        self._given_source = source  # for the `t2igan prepare` command the log suggests
        self.options = cache.reader_options(dataset, split, bbox_crop, captions_per_image,
                                            captions, embeddings, skip_missing)  # fmt: skip
        self.cache_path = cache.cache_file(self.root, dataset, load_size or image_size,
                                           self.options)  # fmt: skip
        self._cache: cache.CachedReader | None | bool = False  # False: not decided yet
        precomputed = embeddings or (self.source if dataset == "port-hdf5" else None)
        if precomputed is not None:
            if text_encoder is not None:
                raise ValueError(f"{precomputed} brings its own caption embeddings: leave "
                                 "text_encoder unset")  # fmt: skip
            # The model's text_dim is linked to ours right after construction: read it now.
            text_encoder = PrecomputedEncoder(str(precomputed), embeddings_dim(precomputed))
        self.text_encoder = text_encoder or SentenceTransformerEncoder()

    @property
    def has_images(self) -> bool:
        """Whether batches carry real images (not with ``images=False``; ``reed-cvpr`` has
        image features only)."""
        if not self.images:
            return False
        return self.dataset == "synthetic" or getattr(cache.reader_class(self.dataset),
                                                      "has_images", True)  # fmt: skip

    @property
    def text_dim(self) -> int:
        """Size of the text embeddings (linked to the model's ``text_dim``)."""
        return self.text_encoder.dim

    @property
    def text_encoder_spec(self) -> dict:
        """How captions are embedded (linked to the model, so checkpoints record it)."""
        return self.text_encoder.spec()

    @property
    def cache_dir(self) -> Path:
        return self.root / self.dataset

    def _raw_reader(self):
        if self.reader is None:
            self.reader = cache.make_reader(self.dataset, self.source, **self.options)
        return self.reader

    def _cached(self) -> cache.CachedReader | None:
        """The prepared cache if it is there and up to date (decided once), else None."""
        if self._cache is not False:
            return self._cache
        self._cache = None
        if not getattr(cache.reader_class(self.dataset), "cacheable", True):
            return None
        load = self.load_size or self.image_size
        command = cache.prepare_command(self.dataset, self.root, self._given_source, load,
                                        self.options)  # fmt: skip
        if not self.use_cache:
            return None
        if not self.cache_path.exists():
            if not self.source.exists():
                return None  # the reader raises, naming the folder and the download command
            log.warning("no cache %s: reading the raw files (slow). Build it with: %s",
                        self.cache_path, command)  # fmt: skip
            return None
        cached = cache.CachedReader(self.cache_path, in_memory=load <= 128)
        if not self.source.exists():
            log.info("%s not found: using the cache %s as it is", self.source, self.cache_path)
            self._cache = cached
            return cached
        expected = cache.manifest_for(self.dataset, self._raw_reader(), load, self.options)
        reason = cache.stale_reason(cached.manifest, expected)
        if reason is not None:
            log.warning("the cache %s is out of date (%s): reading the raw files. Rebuild it "
                        "with: %s --force", self.cache_path, reason, command)  # fmt: skip
            return None
        self._cache = cached
        return cached

    def _load(self, name: str) -> Split:
        if self.dataset == "synthetic":
            return self.reader.load(name)
        cached = self._cached()
        if cached is not None:
            if name not in cached.splits:
                load = self.load_size or self.image_size
                command = cache.prepare_command(self.dataset, self.root, self._given_source, load,
                                                self.options)  # fmt: skip
                raise EmptySplitError(
                    f"the {name} split is not in the cache {self.cache_path}, which holds only "
                    f"{', '.join(cached.splits) or 'no split'} (prepared with --splits). Build "
                    f"one with every split with: {command}, or read the raw files with "
                    "--data.use_cache false", split=name,
                )  # fmt: skip
            return cached.load(name)
        split = self._raw_reader().load(name)
        if split.images is not None:
            # decode each image at the load size once, rather than decode, then resize the array
            split.images = cache._resized(split.images, self.load_size or self.image_size)
        return split

    def _embed(self, split: Split, name: str | None = None) -> list[np.ndarray]:
        if split.caption_emb is not None:
            return split.caption_emb
        if isinstance(self.text_encoder, PrecomputedEncoder):
            raise ValueError(f"the {name} split got no precomputed caption embeddings from "
                             f"{self.text_encoder.source}")  # fmt: skip
        cached = self._cached() if self.dataset != "synthetic" else None
        stored = cached.text_emb(self.text_encoder, name) if cached and name else None
        if stored is not None:
            return stored
        flat = [c for caps in split.captions for c in caps]
        emb = embed_captions(self.text_encoder, flat, self.cache_dir)
        bounds = np.cumsum([0] + [len(c) for c in split.captions])
        return [emb[a:b] for a, b in zip(bounds[:-1], bounds[1:])]

    def _splits(self, stage: str | None) -> tuple[str, ...]:
        return {"fit": ("train", "val"), "validate": ("val",), "test": ("test",)}.get(
            stage, ("train", "val", "test")
        )

    def prepare_data(self) -> None:
        # Runs once (rank 0): fills the embedding cache so that every rank's setup reads it.
        # It does not know the stage: a split without images (a cache prepared with --splits
        # test, a folder of test classes only) is left to setup, which fails if the stage needs it.
        for name in self._splits(None):
            try:
                split = self._load(name)
            except EmptySplitError as err:
                log.info("prepare_data: skipping the %s split (%s)", name, err)
                continue
            self._embed(split, name)

    def _train_split(self) -> tuple[Split, list[np.ndarray]]:
        """The training split and its caption embeddings, with the ``caption_words`` filter."""
        split = self._load("train")
        emb = self._embed(split, "train")
        if self.caption_words is not None:
            split, emb = filter_caption_lengths(split, emb, *self.caption_words)
        return split, emb

    @property
    def vocabulary(self) -> Vocabulary | None:
        """Every word of the training captions (:class:`~t2igan.data.tokens.Vocabulary`),
        built on first use; None when this data has no training split (a cache prepared
        with ``--splits test`` only)."""
        if self._vocabulary is None:
            if "train" in self.datasets:
                captions = self.datasets["train"].split.captions
            else:  # the captions are enough: no embeddings
                try:
                    captions = self._load("train").captions
                except EmptySplitError:
                    return None
            lo, hi = self.caption_words or (0, float("inf"))
            self._vocabulary = Vocabulary.build(
                c for caps in captions for c in caps if lo <= len(words(c)) < hi
            )
        return self._vocabulary

    def setup(self, stage: str | None = None) -> None:
        for name in self._splits(stage):
            if name not in self.datasets:
                train = name == "train"
                if train:
                    split, emb = self._train_split()
                    if self._vocabulary is None:
                        self._vocabulary = Vocabulary.build(
                            c for caps in split.captions for c in caps
                        )
                else:
                    split = self._load(name)
                    emb = self._embed(split, name)
                vocab = self.vocabulary
                tokens = None if vocab is None else [
                    np.stack([vocab.encode(c, self.max_words) for c in caps])
                    for caps in split.captions
                ]  # fmt: skip
                self.datasets[name] = TextImageDataset(
                    split, emb, self.image_size, self.load_size,
                    random_crop=train, flip=self.flip and train, num_captions=self.num_captions,
                    wrong_images=self.wrong_mode == "class", tokens=tokens, images=self.images,
                )  # fmt: skip

    def _loader(self, name: str, train: bool = False) -> DataLoader:
        if name not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[name])
        ds = self.datasets[name]
        return DataLoader(
            ds,
            batch_size=self.train_batch_size(ds) if train else self.batch_size,
            sampler=self._train_sampler(ds) if train else None,
            drop_last=train,  # GAN-INT pairs the two halves of a batch; BN needs B > 1
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=shift_collate if self.wrong_mode == "shift" and ds.has_images else None,
            # workers' seeds from a generator of their own: loading never draws from the global
            # RNG, so the noise stream does not depend on when a loader is created
            generator=torch.Generator().manual_seed(0) if train else None,
        )

    def _train_sampler(self, ds: TextImageDataset) -> EpochSampler:
        if self.train_sampler is None or self.train_sampler.num_items != len(ds):
            labels = ds.labels.numpy() if self.sampler != "shuffle" else None
            distinct = self.train_batch_size(ds) if self.sampler == "distinct_classes" else None
            self.train_sampler = EpochSampler(len(ds), labels, distinct)
        if self._resume is not None:
            self.train_sampler.resume(*self._resume)
            self._resume = None
        return self.train_sampler

    def train_batch_size(self, ds: TextImageDataset) -> int:
        """``batch_size``, or with ``distinct_classes`` at most the number of classes (the SJE
        trainer: 40 classes a batch, fewer when the dataset has fewer)."""
        if self.sampler != "distinct_classes":
            return self.batch_size
        classes = len(torch.unique(ds.labels))
        if self.batch_size > classes:
            log.warning("--data.batch_size %d > %d training classes: minibatches of %d distinct "
                        "classes", self.batch_size, classes, classes)  # fmt: skip
        return min(self.batch_size, classes)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def state_dict(self) -> dict:
        """Where the training epoch under way stands (a checkpoint written mid-epoch resumes
        from the next batch, with the same order and augmentations)."""
        trainer = self.trainer
        sampler = self.train_sampler
        if sampler is None or sampler.epoch_seed is None or trainer is None:
            return {}
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if done >= trainer.num_training_batches:  # the epoch is over: the next one is new
            return {"train_epoch": None}
        items = done * self.train_batch_size(self.datasets["train"])
        return {"train_epoch": {"seed": sampler.epoch_seed, "items": items}}

    def load_state_dict(self, state: dict) -> None:
        epoch = state.get("train_epoch")
        if epoch is None:
            return
        if self.trainer is not None and self.trainer.world_size > 1:
            log.warning("a mid-epoch checkpoint resumed on several devices starts this epoch's "
                        "data afresh: resume from an epoch-end checkpoint to continue exactly")  # fmt: skip
            return
        # Lightning warns that a mid-epoch resume is unreliable unless the DataLoader itself
        # is stateful: here the sampler continues the epoch exactly, so the warning is wrong.
        warnings.filterwarnings("ignore", "You're resuming from a checkpoint that ended before")
        if self.train_sampler is not None:
            self.train_sampler.resume(epoch["seed"], epoch["items"])
        else:  # for the sampler train_dataloader() makes next
            self._resume = (epoch["seed"], epoch["items"])

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        """``t2igan predict`` draws images for the test split's captions."""
        return self._loader("test")

    def dataset_of(self, split: str) -> TextImageDataset:
        """The dataset of ``split`` (set up on first use)."""
        return self.datasets.get(split) or self._loader(split).dataset

    def same_images(self, a: str, b: str) -> bool:
        """Whether splits ``a`` and ``b`` hold the same images (on CUB and MHP ``val`` is
        ``test``)."""
        return self.dataset_of(a).split.names == self.dataset_of(b).split.names

    def caption_examples(self, split: str, n: int) -> dict:
        """``n`` fixed examples of ``split`` (spread over it) with one caption each.

        Returns a dict with ``captions`` (n strings), ``text_emb`` (n, D) the embedding of that
        single caption, ``tokens`` (n, L) the caption's word ids (with a vocabulary), and, where
        the dataset has them, ``images`` (n, 3, H, W) the real images,
        ``attributes`` / ``attributes_named``, ``boxes`` (n, 4) and ``keypoints`` (n, K, 3) of
        the images as shown. Callbacks use it to choose fixed inputs.
        """
        ds = self.dataset_of(split)
        idx = np.linspace(0, len(ds) - 1, n).round().astype(int)
        out = {
            "captions": [ds.split.captions[i][0] for i in idx],
            "text_emb": torch.stack([ds.emb[i][0] for i in idx]),
        }
        if ds.has_images:
            out["images"] = torch.stack([ds.centre_image(int(i)) for i in idx])
        if ds.tokens is not None:
            out["tokens"] = torch.stack([ds.tokens[i][0] for i in idx])
        if ds.split.attributes is not None:
            out["attributes"] = torch.as_tensor(ds.split.attributes[idx], dtype=torch.long)
            out["attributes_named"] = torch.as_tensor(
                np.stack([ds.split.caption_attributes[i][0] for i in idx])
            )
        shown = [ds.centre_annotations(int(i)) for i in idx]
        for key in shown[0] if shown else ():
            out[key] = torch.stack([a[key] for a in shown])
        return out
