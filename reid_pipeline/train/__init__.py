"""Training of the dissimilarity-space model: losses, P x K sampler, GPU augmentation, loop.

``Trainer`` (in ``loop``) is the entry point; ``reid train`` is its command-line face.
"""
