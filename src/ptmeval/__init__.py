"""ptmeval: evaluate pretrained models on your own tasks, along five dimensions."""

__version__ = "0.1.0"
