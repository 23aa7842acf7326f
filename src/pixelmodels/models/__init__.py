"""Model families; importing this package registers each of them."""

from pixelmodels.models import (
    pixelcnn,  # noqa: F401
    spn,  # noqa: F401
)
from pixelmodels.models.base import AutoregressiveModel

__all__ = ["AutoregressiveModel"]
