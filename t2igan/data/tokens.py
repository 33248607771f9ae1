"""Captions as word ids, for models that read words rather than a sentence vector (alignDRAW).

A :class:`Vocabulary` is built from the training captions when the data module is set up (every
word seen, most frequent first, ties in alphabetical order, so the same captions always give the
same ids); the model stores its word list in its checkpoint, so ``t2igan generate`` turns a new
caption into the ids it was trained on. Id 0 pads a caption to the batch's fixed length, id 1
stands for every word the vocabulary does not hold. Captions longer than ``max_words`` are cut.

Mansimov et al. trained on captions of 7 to 29 words only (``homogeneous-data.py`` keeps
``7 <= len < 30``); :func:`filter_caption_lengths` applies such a filter to a training split.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from t2igan.data.contract import Split

PAD, UNKNOWN = "<pad>", "<unk>"
#: Words are runs of letters and digits (with inner apostrophes); case and punctuation are
#: dropped, as in the alignDRAW COCO preprocessing (lower-cased, punctuation stripped).
WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def words(caption: str) -> list[str]:
    """The words of ``caption``, lower-cased, without punctuation."""
    return WORD.findall(caption.lower())


class Vocabulary:
    """Word <-> id, with :data:`PAD` = 0 and :data:`UNKNOWN` = 1 first.

    Args:
        itos: the word of every id, starting with ``<pad>`` and ``<unk>``.
    """

    def __init__(self, itos: list[str]) -> None:
        if list(itos[:2]) != [PAD, UNKNOWN]:
            raise ValueError(f"a vocabulary starts with {PAD!r} and {UNKNOWN!r}, got {itos[:2]}")
        self.itos = list(itos)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("a vocabulary lists each word once")

    @classmethod
    def build(cls, captions, min_count: int = 1) -> Vocabulary:
        """Every word of ``captions`` (an iterable of strings) seen at least ``min_count``
        times, the most frequent first (ties alphabetically)."""
        counts = Counter(w for c in captions for w in words(c))
        kept = sorted((w for w, n in counts.items() if n >= min_count),
                      key=lambda w: (-counts[w], w))  # fmt: skip
        return cls([PAD, UNKNOWN, *kept])

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other) -> bool:
        return isinstance(other, Vocabulary) and self.itos == other.itos

    def encode(self, caption: str, max_words: int) -> np.ndarray:
        """(max_words,) int64 ids of ``caption``'s first ``max_words`` words, padded with 0;
        an unknown word is 1. A caption without any word gives one unknown id (never an
        empty sequence: the language LSTM needs one step)."""
        ids = [self.stoi.get(w, 1) for w in words(caption)[:max_words]] or [1]
        out = np.zeros(max_words, np.int64)
        out[: len(ids)] = ids
        return out

    def decode(self, ids) -> list[str]:
        """The words of ``ids`` up to the first padding."""
        out = []
        for i in np.asarray(ids).tolist():
            if i == 0:
                break
            out.append(self.itos[i] if i < len(self.itos) else UNKNOWN)
        return out


class _Rows:
    """The rows ``index`` of a sequence (a lazy image reader stays lazy)."""

    def __init__(self, seq, index: np.ndarray) -> None:
        self.seq, self.index = seq, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int):
        return self.seq[int(self.index[i])]


def filter_caption_lengths(split: Split, emb: list[np.ndarray], lo: int, hi: int):
    """``(split, emb)`` with only the captions of ``lo <= words < hi`` words (Mansimov et al.:
    7 and 30), and without the images left with none. Raises a ValueError when none is left."""
    keep_caps = [
        np.array([lo <= len(words(c)) < hi for c in caps], bool) for caps in split.captions
    ]
    rows = np.array([i for i, k in enumerate(keep_caps) if k.any()], np.int64)
    if len(rows) == 0:
        raise ValueError(f"no training caption has {lo} to {hi - 1} words: widen "
                         "--data.caption_words")  # fmt: skip

    def take(value):
        return None if value is None else np.asarray(value)[rows]

    caps = [[c for c, k in zip(split.captions[i], keep_caps[i]) if k] for i in rows]
    new = Split(
        images=None if split.images is None else _Rows(split.images, rows),
        captions=caps, labels=take(split.labels),
        names=[split.names[i] for i in rows], boxes=take(split.boxes),
        keypoints=take(split.keypoints), part_names=split.part_names,
        attributes=take(split.attributes),
        caption_attributes=None if split.caption_attributes is None else
        [split.caption_attributes[i][keep_caps[i]] for i in rows],
        caption_emb=None, extra=split.extra,
        image_features=None if split.image_features is None else
        [split.image_features[i] for i in rows],
    )  # fmt: skip
    return new, [emb[i][keep_caps[i]] for i in rows]
