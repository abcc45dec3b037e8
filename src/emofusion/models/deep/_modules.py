"""PyTorch modules used by the deep estimators.

Every module has the signature ``forward(xs, lengths, return_embedding=False)``: ``xs`` is a list
with one tensor per modality (``(B, T_m, d_m)`` padded frames, or ``(B, d)`` for pooled input),
``lengths`` is ``(B, M)`` int64 (0 = missing modality). With ``return_embedding`` the module
returns the representation that its final linear layer consumes.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def length_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) boolean mask, True on real frames."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


class MLPNet(nn.Module):
    """Pooled features -> [Linear, ReLU, Dropout]* -> Linear (optional dropout on the input)."""

    def __init__(self, n_in: int, hidden_sizes, n_classes: int, dropout: float,
                 input_dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.Dropout(input_dropout)] if input_dropout else []
        prev = n_in
        for h in hidden_sizes:
            layers += [nn.Linear(prev, int(h)), nn.ReLU(), nn.Dropout(dropout)]
            prev = int(h)
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev, n_classes)

    def forward(self, xs, lengths, return_embedding: bool = False):
        x = xs[0]
        if x.dim() == 3:  # (B, 1, d) single frames
            x = x[:, 0]
        e = self.body(x)
        return e if return_embedding else self.head(e)


class AttentionPool(nn.Module):
    """Learned additive attention over frames: masked softmax of ``v^T tanh(W h_t)``."""

    def __init__(self, dim: int, attention_size: int):
        super().__init__()
        self.proj = nn.Linear(dim, attention_size)
        self.score = nn.Linear(attention_size, 1, bias=False)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        s = self.score(torch.tanh(self.proj(h))).squeeze(-1)
        s = s.masked_fill(~mask, float("-inf"))
        a = torch.softmax(s, dim=1)
        return torch.bmm(a.unsqueeze(1), h).squeeze(1)


def sinusoidal_positions(T: int, dim: int, device, dtype) -> torch.Tensor:
    pos = torch.arange(T, device=device, dtype=torch.float64)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float64)
                    * (-math.log(10000.0) / dim))
    pe = torch.zeros(T, dim, device=device, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
    return pe.to(dtype)


def reverse_index(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) time index that reverses each sequence's first ``lengths[b]`` frames and leaves
    the padding in place (an involution: applying it twice is the identity)."""
    t = torch.arange(T, device=lengths.device)[None, :]
    return torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)


class BiRNN(nn.Module):
    """Bidirectional GRU/LSTM over right-padded frames, exactly as a packed bidirectional RNN.

    Each direction is a unidirectional RNN run on the padded batch: the forward direction reads
    real frames before any padding, and the backward direction runs on every sequence reversed
    *within its own length* (padding stays at the end), so padding never reaches a real frame's
    output. This avoids ``pack_padded_sequence``, whose CPU backward pass is several times
    slower. Outputs at padded positions are finite and must be masked by the caller.
    """

    def __init__(self, kind: str, n_in: int, hidden: int, n_layers: int, dropout: float):
        super().__init__()
        rnn = nn.GRU if kind == "gru" else nn.LSTM
        self.layers = nn.ModuleList(
            nn.ModuleList([rnn(n_in if i == 0 else 2 * hidden, hidden, batch_first=True),
                           rnn(n_in if i == 0 else 2 * hidden, hidden, batch_first=True)])
            for i in range(n_layers)
        )
        self.dropout = nn.Dropout(dropout if n_layers > 1 else 0.0)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, full: bool) -> torch.Tensor:
        B, T = x.shape[0], x.shape[1]
        if full:  # no padding in this batch
            def rev(h):
                return h.flip(1)
        else:
            index = reverse_index(lengths, T)
            rows = torch.arange(B, device=x.device)[:, None]

            def rev(h):
                return h[rows, index]
        h = x
        for i, (fwd, bwd) in enumerate(self.layers):
            if i:
                h = self.dropout(h)
            a, _ = fwd(h)
            b, _ = bwd(rev(h))
            h = torch.cat([a, rev(b)], dim=2)
        return h


class FrameEncoder(nn.Module):
    """Encode one modality's padded frames into one vector.

    kinds: ``attention`` (linear projection + attention pooling), ``gru`` / ``lstm`` (linear
    input projection to ``hidden``, then a bidirectional RNN that never reads padding into a real
    frame, see `BiRNN`, + attention pooling), ``transformer`` (linear input projection +
    sinusoidal positions + TransformerEncoder with key padding mask, + attention pooling).
    The input projection of the RNNs keeps wide inputs (2048-d visual frames) cheap: the
    recurrent weights then see ``hidden`` features instead of ``n_in``.
    """

    def __init__(self, kind: str, n_in: int, hidden: int, n_layers: int, n_heads: int,
                 attention_size: int, dropout: float):
        super().__init__()
        self.kind = kind
        if kind == "attention":
            self.proj = nn.Linear(n_in, hidden)
            self.out_dim = hidden
        elif kind in ("gru", "lstm"):
            self.proj = nn.Linear(n_in, hidden)
            self.rnn = BiRNN(kind, hidden, hidden, n_layers, dropout)
            self.out_dim = 2 * hidden
        elif kind == "transformer":
            self.proj = nn.Linear(n_in, hidden)
            layer = nn.TransformerEncoderLayer(hidden, n_heads, dim_feedforward=2 * hidden,
                                               dropout=dropout, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
            self.out_dim = hidden
        else:
            raise ValueError(
                f"unknown encoder '{kind}'; choose attention, gru, lstm or transformer"
            )
        self.pool = AttentionPool(self.out_dim, attention_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        mask = length_mask(lengths, T)
        if self.kind == "attention":
            h = self.proj(x)
        elif self.kind in ("gru", "lstm"):
            h = self.rnn(self.proj(x), lengths, full=bool(mask.all()))
        else:
            h = self.proj(x) + sinusoidal_positions(T, self.out_dim, x.device, x.dtype)
            h = self.encoder(h, src_key_padding_mask=~mask)
        return self.pool(h, mask)


class ConcatFusion(nn.Module):
    """Concatenate the modality embeddings (dropped/missing ones are zeros)."""

    def __init__(self, dims, hidden):
        super().__init__()
        self.out_dim = int(sum(dims))

    def forward(self, embs, keep):
        return torch.cat([e * keep[:, m:m + 1] for m, e in enumerate(embs)], dim=1)


class GatedFusion(nn.Module):
    """Gated multimodal unit: ``h = sum_m keep_m * sigmoid(W_z,m [e_1..e_M]) * tanh(W_m e_m)``."""

    def __init__(self, dims, hidden):
        super().__init__()
        self.transforms = nn.ModuleList(nn.Linear(d, hidden) for d in dims)
        self.gate = nn.Linear(int(sum(dims)), hidden * len(dims))
        self.hidden = hidden
        self.out_dim = hidden

    def forward(self, embs, keep):
        embs = [e * keep[:, m:m + 1] for m, e in enumerate(embs)]
        B = embs[0].shape[0]
        z = torch.sigmoid(self.gate(torch.cat(embs, dim=1))).view(B, len(embs), self.hidden)
        h = torch.stack([torch.tanh(t(e)) for t, e in zip(self.transforms, embs, strict=True)],
                        dim=1)
        return (z * h * keep[:, :, None]).sum(dim=1)


class CrossModalAttentionFusion(nn.Module):
    """Modality embeddings as tokens (+ learned modality embedding), one multi-head
    self-attention layer across modalities (missing ones masked as keys), masked mean."""

    def __init__(self, dims, hidden, n_heads: int = 4):
        super().__init__()
        self.proj = nn.ModuleList(nn.Linear(d, hidden) for d in dims)
        self.modality = nn.Parameter(torch.zeros(len(dims), hidden))
        heads = n_heads if hidden % n_heads == 0 else 1
        self.attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.norm = nn.LayerNorm(hidden)
        self.out_dim = hidden

    def forward(self, embs, keep):
        tokens = torch.stack([p(e) for p, e in zip(self.proj, embs, strict=True)], dim=1)
        tokens = tokens + self.modality
        tokens = tokens * keep[:, :, None]
        present = keep > 0
        pad = ~present
        pad = pad & present.any(dim=1, keepdim=True)  # all missing: attend to zeros, output 0
        out, _ = self.attn(tokens, tokens, tokens, key_padding_mask=pad, need_weights=False)
        out = self.norm(tokens + out) * keep[:, :, None]
        return out.sum(dim=1) / keep.sum(dim=1, keepdim=True).clamp(min=1.0)


FUSIONS = {"concat": ConcatFusion, "gated": GatedFusion, "attention": CrossModalAttentionFusion}


def drop_modalities(present: torch.Tensor, p: float) -> torch.Tensor:
    """Zero each present modality with probability p, never all present ones of a sample."""
    r = torch.rand(present.shape, device=present.device)
    keep = present & (r >= p)
    none = ~keep.any(dim=1) & present.any(dim=1)
    if bool(none.any()):
        choice = (torch.rand(present.shape, device=present.device) + 1.0) * present
        one = torch.zeros_like(present)
        one.scatter_(1, choice.argmax(dim=1, keepdim=True), True)
        keep = keep | (one & none[:, None])
    return keep


class SequenceNet(nn.Module):
    """Per-modality `FrameEncoder` -> fusion (concat / gated / attention) -> dropout -> Linear.

    With one modality this is simply encoder -> classifier. A modality with length 0 (missing) is
    encoded from a single zero frame and then zeroed by the fusion (``keep`` mask), exactly like a
    modality removed by modality dropout during training.
    """

    def __init__(self, widths, n_classes, encoder="gru", hidden=64, n_layers=1, n_heads=4,
                 attention_size=64, fusion="concat", dropout=0.2, modality_dropout=0.0):
        super().__init__()
        self.encoders = nn.ModuleList(
            FrameEncoder(encoder, int(w), hidden, n_layers, n_heads, attention_size, dropout)
            for w in widths
        )
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion '{fusion}'; choose {', '.join(FUSIONS)}")
        dims = [e.out_dim for e in self.encoders]
        self.fusion = (CrossModalAttentionFusion(dims, hidden, n_heads) if fusion == "attention"
                       else FUSIONS[fusion](dims, hidden))
        self.modality_dropout = float(modality_dropout)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.fusion.out_dim, n_classes)

    def forward(self, xs, lengths, return_embedding: bool = False):
        present = lengths > 0
        embs = []
        for m, (enc, x) in enumerate(zip(self.encoders, xs, strict=True)):
            if x.dim() == 2:
                x = x[:, None, :]
            embs.append(enc(x, lengths[:, m].clamp(min=1)))
        keep = present
        if self.training and self.modality_dropout > 0 and len(embs) > 1:
            keep = drop_modalities(present, self.modality_dropout)
        fused = self.fusion(embs, keep.to(embs[0].dtype))
        return fused if return_embedding else self.head(self.dropout(fused))


class SmallSpectrogramCNN(nn.Module):
    """[Conv3x3, BatchNorm, ReLU, MaxPool2 (ceil)] blocks over a (C, F, T) image, then masked
    global average pooling. Activations beyond each utterance's length are zeroed after every
    block, so padding does not change the output in eval mode."""

    def __init__(self, n_channels: int, channels):
        super().__init__()
        blocks = []
        prev = n_channels
        for c in channels:
            blocks.append(nn.ModuleDict({
                "conv": nn.Conv2d(prev, int(c), kernel_size=3, padding=1),
                "norm": nn.BatchNorm2d(int(c)),
            }))
            prev = int(c)
        self.blocks = nn.ModuleList(blocks)
        self.pool = nn.MaxPool2d(2, ceil_mode=True)
        self.out_dim = prev

    def forward(self, img: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        L = lengths
        x = img
        for block in self.blocks:
            x = torch.relu(block["norm"](block["conv"](x)))
            x = x * length_mask(L, x.shape[-1])[:, None, None, :].to(x.dtype)
            x = self.pool(x)
            L = torch.div(L + 1, 2, rounding_mode="floor")
        mask = length_mask(L, x.shape[-1])[:, None, None, :].to(x.dtype)
        return (x * mask).sum(dim=(2, 3)) / (L.to(x.dtype)[:, None] * x.shape[2])


class ResizedBackbone(nn.Module):
    """A torchvision image backbone fed each utterance's *own* frames resized to size x size.

    The resize is one vectorised ``grid_sample`` with a per-sample affine grid that spans only
    the real frames (``align_corners=True``), so padding is never sampled.
    """

    def __init__(self, net: nn.Module, out_dim: int, size: int):
        super().__init__()
        self.net = net
        self.out_dim = out_dim
        self.size = int(size)

    def forward(self, img: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, _, _, T = img.shape
        s = self.size
        ys = torch.linspace(-1.0, 1.0, s, device=img.device, dtype=img.dtype)
        u = torch.linspace(0.0, 1.0, s, device=img.device, dtype=img.dtype)
        if T > 1:
            last = (lengths.to(img.dtype) - 1.0).clamp(min=0.0)  # last real frame index
            xs = -1.0 + 2.0 * u[None, :] * last[:, None] / (T - 1)
        else:
            xs = torch.full((B, s), -1.0, device=img.device, dtype=img.dtype)
        grid = torch.stack(
            [xs[:, None, :].expand(B, s, s), ys[None, :, None].expand(B, s, s)], dim=-1
        )
        resized = torch.nn.functional.grid_sample(img, grid, mode="bilinear",
                                                  padding_mode="border", align_corners=True)
        return self.net(resized).flatten(1)


class SpectrogramNet(nn.Module):
    """(B, T, C*F) frames -> (B, C, F, T) image -> backbone -> dropout -> Linear."""

    def __init__(self, backbone: nn.Module, n_channels: int, n_classes: int, dropout: float):
        super().__init__()
        self.backbone = backbone
        self.n_channels = n_channels
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(backbone.out_dim, n_classes)

    def forward(self, xs, lengths, return_embedding: bool = False):
        x = xs[0]
        if x.dim() == 2:
            x = x[:, None, :]
        B, T, D = x.shape
        img = x.reshape(B, T, self.n_channels, D // self.n_channels).permute(0, 2, 3, 1)
        e = self.backbone(img.contiguous(), lengths[:, 0].clamp(min=1))
        return e if return_embedding else self.head(self.dropout(e))


class TextNet(nn.Module):
    """Hugging Face encoder -> masked mean pooling over tokens -> dropout -> Linear."""

    def __init__(self, encoder: nn.Module, n_classes: int, dropout: float):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(int(encoder.config.hidden_size), n_classes)

    def forward(self, xs, lengths, return_embedding: bool = False):
        ids = xs[0]
        if ids.dim() == 3:
            ids = ids[..., 0]
        ids = ids.long()
        mask = length_mask(lengths[:, 0].clamp(min=1), ids.shape[1])
        out = self.encoder(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        m = mask[:, :, None].to(out.dtype)
        e = (out * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        return e if return_embedding else self.head(self.dropout(e))
