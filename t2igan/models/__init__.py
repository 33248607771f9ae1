"""Paper models: one file per paper, each a LightningModule chosen by ``class_path``."""

from t2igan.models.base import TextToImageGAN, TextToImageModel
from t2igan.models.char_cnn_rnn import CharCNNEncoder, CharCNNRNNSJE
from t2igan.models.draw import DRAW, AlignDRAW
from t2igan.models.gan_int_cls import GANINTCLS
from t2igan.models.gawwn import GAWWNBox, GAWWNKeypoints
from t2igan.models.gawwn_keypoints import GAWWNKeypointGenerator
from t2igan.models.stackgan import StackGAN, StackGANStage1, StackGANStage2
from t2igan.models.style_encoder import StyleEncoderGAN

__all__ = [
    "TextToImageModel", "TextToImageGAN", "GANINTCLS", "GAWWNBox", "GAWWNKeypoints",
    "GAWWNKeypointGenerator", "StyleEncoderGAN", "StackGAN", "StackGANStage1", "StackGANStage2",
    "CharCNNRNNSJE", "CharCNNEncoder", "DRAW", "AlignDRAW",
]  # fmt: skip
