"""pixelmodels: exact-likelihood autoregressive image models (PixelCNN, PixelRNN, Gated PixelCNN,
PixelCNN++, Subscale Pixel Networks) with one API and one CLI.

    >>> import pixelmodels
    >>> model = pixelmodels.build("pixelcnn", image_shape=(1, 8, 8), num_levels=17, hidden_channels=32)
    >>> x = model.sample(4)                      # (4, 1, 8, 8) integers in [0, 17)
    >>> nats = model.log_prob(x)                 # exact log-likelihood per image
    >>> run_dir = pixelmodels.train(pixelmodels.get_preset("quickstart"), "runs/quickstart")  # doctest: +SKIP
    >>> trained = pixelmodels.load_checkpoint(run_dir)  # doctest: +SKIP
"""

from pixelmodels.evaluate import bits_per_dim
from pixelmodels.models.base import AutoregressiveModel
from pixelmodels.registry import available_models, build
from pixelmodels.training import RunConfig, get_preset, load_checkpoint, train

__version__ = "0.1.0"

__all__ = [
    "AutoregressiveModel",
    "RunConfig",
    "available_models",
    "bits_per_dim",
    "build",
    "get_preset",
    "load_checkpoint",
    "train",
    "__version__",
]
