"""DAS companion: input-adaptive frame/slice subsampling (Deep Attention-guided Adaptive Subsampling,
arXiv 2510.12376), its baselines, and the code that trains and evaluates them."""

__version__ = "0.1.0"
