"""Model families; importing this package registers each of them."""

from pixelmodels.models import (
    gated_pixelcnn,  # noqa: F401
    multiscale,  # noqa: F401  (registers the Multi-Scale PixelRNN's conditional stage with stages)
    pixelcnn,  # noqa: F401
    pixelcnn_pp,  # noqa: F401
    pixelrnn,  # noqa: F401
    spn,  # noqa: F401
    stages,  # noqa: F401
)
from pixelmodels.models.base import AutoregressiveModel

__all__ = ["AutoregressiveModel"]
