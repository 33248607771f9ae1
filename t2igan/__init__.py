"""t2igan: the classic text-to-image GANs on PyTorch Lightning.

    import t2igan
    pipe = t2igan.load("runs/quickstart/checkpoints/last.ckpt")
    images = pipe("a bird with a red body and a blue head", num=8, seed=0)   # PIL images

(:class:`t2igan.pipeline.Pipeline`; the ``t2igan`` command: :mod:`t2igan.cli`.)
"""


def load(ckpt, device: str = "cpu", text_encoder=None, keypoint_generator=None):
    """A :class:`~t2igan.pipeline.Pipeline` for the checkpoint ``ckpt`` on ``device``, with an
    optional replacement ``text_encoder`` and a ``keypoint_generator`` checkpoint (keypoint
    GAWWN models). See :meth:`t2igan.pipeline.Pipeline.from_checkpoint`."""
    from t2igan.pipeline import Pipeline  # imports PyTorch: only when a model is loaded

    return Pipeline.from_checkpoint(ckpt, device, text_encoder, keypoint_generator)
