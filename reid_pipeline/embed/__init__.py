"""Stage ``embed``: crops -> vectors.

``backbones/`` builds a network by name (torchvision, EfficientNet-Lite, torchreid);
``model`` puts the adapter and the dichotomy classifier on top and loads/saves
checkpoints (``weights_only=True``); ``pretrained`` starts a backbone from ImageNet or a
weights file; ``embedder`` is the pipeline's batched crop embedder; ``graphed`` the
fixed-batch CUDA-graph embedder (the GPU benchmark's path); ``onnx`` exports the embedding
network and serves it with ONNX Runtime (``model.runtime``, the CPU default).
"""
