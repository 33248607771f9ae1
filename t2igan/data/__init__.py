"""Data: the batch contract, dataset readers, text encoders and the shared DataModule."""

from t2igan.data.contract import CUB_PARTS, Batch, Split
from t2igan.data.datamodule import T2IDataModule
from t2igan.data.synthetic import SyntheticBirds
from t2igan.data.text import HashingEncoder, SentenceTransformerEncoder, TextEncoder

__all__ = [
    "CUB_PARTS", "Batch", "Split", "T2IDataModule", "SyntheticBirds", "HashingEncoder",
    "SentenceTransformerEncoder", "TextEncoder",
]  # fmt: skip
