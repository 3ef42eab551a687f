"""Published numbers the book compares with: inputs typed from the papers, never results of this
project, and always labelled as published where they appear.

- :data:`DAS_PAPER`: test AUC and balanced accuracy of the DAS paper's Table 1 (Shankaranarayana et
  al., 2025), as far as they could be recovered; the paper reports no AdrenalMNIST3D numbers.
- :data:`MEDMNIST_V2`: test AUC and accuracy of MedMNIST v2's 3D benchmark at 28^3 (Yang et al.,
  Scientific Data 2023): full-volume ResNet-18 models with 2.5D, 3D or ACS convolutions. ``None``
  where we have not copied a value.
"""

from __future__ import annotations

# (dataset, method) -> (AUC, balanced accuracy)
DAS_PAPER: dict[tuple[str, str], tuple[float, float]] = {
    ("organmnist3d", "das"): (0.931, 0.581),
    ("organmnist3d", "adps"): (0.928, 0.573),
    ("nodulemnist3d", "das"): (0.799, 0.758),
    ("nodulemnist3d", "adps"): (0.782, 0.758),
    ("vesselmnist3d", "das"): (0.752, 0.829),
    ("vesselmnist3d", "adps"): (0.739, 0.807),
    ("gastric antrum (in-house)", "das"): (0.639, 0.341),
    ("gastric antrum (in-house)", "full"): (0.611, 0.301),
}

# dataset -> model -> (AUC, accuracy)
MEDMNIST_V2: dict[str, dict[str, tuple[float, float | None]]] = {
    "organmnist3d": {"ResNet-18+2.5D": (0.977, 0.788), "ResNet-18+3D": (0.996, 0.907)},
    "nodulemnist3d": {"ResNet-18+2.5D": (0.838, 0.835), "ResNet-18+3D": (0.863, 0.844)},
    "fracturemnist3d": {"ResNet-18+2.5D": (0.587, 0.451), "ResNet-18+3D": (0.712, 0.508)},
    "adrenalmnist3d": {
        "ResNet-18+2.5D": (0.718, 0.772),
        "ResNet-18+3D": (0.827, 0.721),
        "ResNet-18+ACS": (0.839, None),
    },
    "vesselmnist3d": {"ResNet-18+2.5D": (0.748, 0.846), "ResNet-18+3D": (0.874, 0.877)},
    "synapsemnist3d": {"ResNet-18+2.5D": (0.634, 0.696), "ResNet-18+3D": (0.820, 0.745)},
}


def best_full_volume_auc(dataset: str) -> tuple[str, float] | None:
    """The MedMNIST v2 benchmark model with the highest test AUC on ``dataset``, or ``None``."""
    models = MEDMNIST_V2.get(dataset)
    if not models:
        return None
    name = max(models, key=lambda model: models[model][0])
    return name, models[name][0]
