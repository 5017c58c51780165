"""Fixed-batch embedding replayed from a CUDA graph: the model at the GPU's pace.

Why: OSNet is many small convolutions; at batch 256 an eager forward spends a large part
of its time launching ~hundreds of kernels from Python. A CUDA graph records the whole
forward (normalisation included) once and replays it with one launch, in fp16 and
channels_last (the layout cuDNN's fast convolution kernels want). The batch size is
fixed by the graph; shorter batches are padded. On the CPU it is the plain eager forward.
"""

from __future__ import annotations

import logging

import torch

from reid_pipeline.embed.model import IMAGENET_MEAN, IMAGENET_STD, ReIDModel

log = logging.getLogger(__name__)


class GraphedFeatures:
    """``model.features`` on RGB uint8 batches (B, 3, H, W), captured as a CUDA graph."""

    def __init__(
        self,
        model: ReIDModel,
        batch: int,
        size: tuple[int, int],
        device: torch.device | str,
        half: bool = True,
    ) -> None:
        self.model = model.eval()
        self.batch = int(batch)
        self.size = (int(size[0]), int(size[1]))
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.dtype = torch.float16 if (self.cuda and half) else torch.float32
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1) * 255.0
        self.graph: torch.cuda.CUDAGraph | None = None
        if self.cuda:
            self.model.to(memory_format=torch.channels_last)
            self.static_in = torch.zeros(
                self.batch, 3, *self.size, dtype=torch.uint8, device=self.device
            )
            self._capture()

    def _forward(self, x_u8: torch.Tensor) -> torch.Tensor:
        x = (x_u8.float() - self.mean) / self.std
        if self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        # no autocast weight cache: cached casts made during capture would be graph-owned
        with torch.autocast(
            self.device.type,
            dtype=self.dtype,
            cache_enabled=False,
            enabled=self.cuda and self.dtype != torch.float32,
        ):
            return self.model.features(x).float()

    def _capture(self) -> None:
        s = torch.cuda.Stream(self.device)
        s.wait_stream(torch.cuda.current_stream(self.device))
        with torch.inference_mode(), torch.cuda.stream(s):
            for _ in range(3):  # warm-up outside the graph: cuDNN picks its algorithms
                self._forward(self.static_in)
        torch.cuda.current_stream(self.device).wait_stream(s)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self.static_out = self._forward(self.static_in)

    def describe(self) -> str:
        if self.graph is not None:
            return f"CUDA graph, {str(self.dtype)[6:]}, channels_last, batch {self.batch}"
        return f"eager {str(self.dtype)[6:]}, batch {self.batch}"

    def __call__(self, x_u8: torch.Tensor) -> torch.Tensor:
        """Embeddings (N, D) float32 of any number N of uint8 images of ``size``."""
        if tuple(x_u8.shape[1:]) != (3, *self.size) or x_u8.dtype != torch.uint8:
            raise ValueError(
                f"expected uint8 (N, 3, {self.size[0]}, {self.size[1]}), got "
                f"{x_u8.dtype} {tuple(x_u8.shape)}"
            )
        if self.graph is None:
            with torch.inference_mode():
                return self._forward(x_u8.to(self.device))
        outs = []
        for i in range(0, x_u8.shape[0], self.batch):
            part = x_u8[i : i + self.batch]
            n = part.shape[0]
            self.static_in[:n].copy_(part, non_blocking=True)
            if n < self.batch:
                self.static_in[n:].zero_()
            self.graph.replay()
            outs.append(self.static_out[:n].clone())
        return torch.cat(outs) if outs else torch.zeros(0, self.model.embed_dim, device=self.device)


class FastEmbedder:
    """Crops of any size -> embeddings with one resize kernel and one graph replay per batch.

    Why not ``Embedder.embed_crops``: it resizes crop by crop (a few kernel launches each),
    which costs as much as the model at hundreds of crops per step. Here the crops are
    copied into one padded uint8 canvas on the host (pinned, one host->device copy), resized
    together by ``torchvision.ops.roi_align`` (adaptive sampling averages every source pixel
    of a bin: an area filter, so shrinking does not alias), and embedded by
    :class:`GraphedFeatures`. Same inputs and outputs as ``Embedder.embed_crops``.
    """

    def __init__(
        self, model: ReIDModel, device: torch.device | str, batch: int = 256, half: bool = True
    ) -> None:
        self.device = torch.device(device)
        self.batch = int(batch)
        self.size = tuple(getattr(model, "input_size", (256, 128)))
        self.features = GraphedFeatures(model, self.batch, self.size, self.device, half=half)
        self.dim = model.embed_dim

    def describe(self) -> str:
        return f"roi_align resize + {self.features.describe()}"

    def resize(self, crops: list) -> torch.Tensor:
        """BGR uint8 (H, W, 3) crops -> RGB uint8 (N, 3, h, w) on the device."""
        import numpy as np
        from torchvision.ops import roi_align

        n = len(crops)
        hmax = max(int(c.shape[0]) for c in crops)
        wmax = max(int(c.shape[1]) for c in crops)
        canvas = np.zeros((n, hmax, wmax, 3), np.uint8)
        boxes = torch.zeros(n, 5)
        for i, c in enumerate(crops):
            a = np.asarray(c)
            if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or 0 in a.shape:
                raise ValueError(
                    f"crop {i}: expected a BGR uint8 (H, W, 3) image, got {a.dtype} {a.shape}"
                )
            canvas[i, : a.shape[0], : a.shape[1]] = a
            boxes[i] = torch.tensor([i, 0.0, 0.0, float(a.shape[1]), float(a.shape[0])])
        t = torch.from_numpy(canvas)
        if self.device.type == "cuda":
            t = t.pin_memory()
        t = t.to(self.device, non_blocking=True)
        x = t.permute(0, 3, 1, 2).flip(1).float()  # NHWC BGR -> NCHW RGB
        r = roi_align(
            x,
            boxes.to(self.device),
            output_size=self.size,
            spatial_scale=1.0,
            sampling_ratio=-1,
            aligned=True,
        )
        return r.round_().clamp_(0, 255).to(torch.uint8)

    def embed_crops(self, crops: list) -> torch.Tensor:
        """(N, D) float32 embeddings on the device, in the order of ``crops``."""
        if len(crops) == 0:
            return torch.zeros(0, self.dim, device=self.device)
        outs = [
            self.features(self.resize(list(crops[i : i + self.batch])))
            for i in range(0, len(crops), self.batch)
        ]
        return torch.cat(outs)
