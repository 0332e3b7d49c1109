"""DMF2Mel, assembled: stem, HAMS-Net and DC-FAM branches, SplineMap fusion, convMamba, mel head.

Fan et al., "DMF2Mel: A Dynamic Multiscale Fusion Network for EEG-Driven Mel Spectrogram
Reconstruction", ACM MM 2025 (arXiv 2507.07526). The flow is described in the book's appendix
``book/architecture.md`` ("The model"); :class:`DMF2MelConfig` holds every size, repeat count, weight-sharing choice and
ablation switch, with the official sizes in :meth:`DMF2MelConfig.paper`.

Input EEG is time-major, ``(batch, time, n_chans)``, at 64 Hz; the output is the mel spectrogram
``(batch, time, n_mels)`` (or ``(batch, time, 1)`` with ``head="single"``). Any length works.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from dmf2mel.errors import DataError, UserError
from dmf2mel.models.attention import SplineMapAttention
from dmf2mel.models.dcfam import DCFAM
from dmf2mel.models.dropout import Dropout
from dmf2mel.models.hams import HAMSNet
from dmf2mel.models.mamba import ConvMamba
from dmf2mel.models.scan import BACKENDS
from dmf2mel.validation import check_divides, check_eeg

HEADS = ("bands", "single")
#: The official fusion chain: (query source, key/value source) per cross-attention layer. "fused"
#: is the previous layer's output. Chains longer than six layers repeat the pattern.
CROSS_ATTENTION_CHAIN = (
    ("dcfam", "hams"),
    ("fused", "hams"),
    ("dcfam", "fused"),
    ("fused", "hams"),
    ("dcfam", "fused"),
    ("fused", "dcfam"),
)
#: Wavelength scale of the sinusoidal position encoding (Vaswani et al., 2017).
POSITION_ENCODING_BASE = 10000.0


@dataclass(frozen=True)
class DMF2MelConfig:
    """Every size, repeat count, weight-sharing choice and switch of :class:`DMF2Mel`.

    Use the presets :meth:`paper` (the official sizes) and :meth:`small` (trains in minutes on two
    CPU cores); both take field overrides, e.g. ``DMF2MelConfig.small(n_subjects=12)``.

    Parameters
    ----------
    n_chans : int, default 64
        EEG channels of the input. When it differs from ``d_model`` a linear input projection is added.
    n_mels : int, default 10
        Mel bands of the output (``head="bands"``).
    n_subjects : int, default 85
        Known subjects (SparrKULee has 85); the embedding table has one more row for "unknown".
    d_model : int, default 64
        Feature size throughout the network.
    n_heads : int, default 2
        Attention heads of every SplineMap attention.
    d_inner : int, default 1024
        Hidden channels of the stem's convolutional feed-forward.
    stem_kernel_size : int, default 9
        Kernel of the first convolution of the stem's feed-forward.
    dropout : float, default 0.5
        Output dropout of the attentions, dropout of the stem feed-forward and of the convMamba
        feed-forward.
    attn_dropout : float, default 0.1
        Dropout on attention weights (SplineMap attention) and on DC-FAM's aggregation weights.
    d_state, d_conv, expand : int, default 128, 4, 2
        Mamba state size, causal conv kernel and expansion.
    d_ff_mamba : int, default 2048
        Hidden size of the convMamba feed-forward.
    convmamba_kernel_size : int, default 7
        Kernel of the convMamba time convolution.
    n_hams_repeats, n_dcfam_repeats : int, default 6, 4
        Residual applications of HAMS-Net and DC-FAM.
    n_cross_layers : int, default 6
        Cross-attention layers of the fusion chain (see ``CROSS_ATTENTION_CHAIN``), at least 1.
    n_convmamba_repeats : int, default 2
        Applications of convMamba (each but the last with a residual, unless ``convmamba_last_residual``).
    convmamba_last_residual : bool, default False
        Add a residual around the last convMamba pass too. The official model (two passes) has none there, but its
        first pass keeps one; with :meth:`small`'s single pass the official rule would leave nothing that skips
        convMamba, so :meth:`small` sets it (its measured effect: ``benchmarks/results/explanations_teaching.md``).
    convmamba_output_dropout : bool, default True
        The second dropout of convMamba's feed-forward, after its output projection (official); False leaves it out.
    share_hams, share_dcfam, share_convmamba : bool, default True
        One instance applied at every repeat (the official code) instead of one per repeat.
    share_fusion_self_attention : bool, default True
        One self-attention layer for both branches before the cross-attention chain (official).
    share_first_cross_attention : bool, default True
        The first cross-attention of the chain is the (HAMS-Net branch's) self-attention layer applied once more, as
        in the official code, which builds six fusion attention layers in all; False gives it its own layer.
    use_dcfam, use_hams : bool, default True
        False makes the branch the identity: it passes the stem output on unchanged (the fusion
        still runs between the two streams).
    use_splinemap : bool, default True
        False replaces every AGKAN projection by a linear layer.
    use_mamba : bool, default True
        False drops the BiMamba inside convMamba (its convolutions and feed-forwards stay).
    head : {"bands", "single"}, default "bands"
        "bands" predicts all ``n_mels`` bands; "single" is the official one-channel output.
    subject_dropout : float, default 0.1
        In training mode, the fraction of windows whose subject is replaced by "unknown", which
        trains the unknown-subject embedding.
    scan_backend : str, default "auto"
        Selective-scan backend (see :mod:`dmf2mel.models.scan`).
    dcfam_kernel_size : int, default 3
        Neighbourhood (along time) of DC-FAM's aggregation.
    dcfam_n_heads : int, default 8
        Heads of DC-FAM (the official 8; the attentions have ``n_heads``); must divide ``d_model``.
    dcfam_normalise_weights : bool, default True
        Softmax over DC-FAM's neighbourhood weights; False reproduces the official code, which
        leaves them unnormalised.
    hams_reduction : int, default 16
        Channel reduction of HAMS-Net's ADAF blocks.
    hams_n_bottleneck_adaf : int, default 3
        ADAF blocks at the HAMS-Net bottleneck (before its residual).
    share_hams_adaf : bool, default True
        One ADAF instance for all of a HAMS-Net's ADAF uses (the official code); False builds one per use.
    hams_position_window : int or None, default None
        Window (samples) of HAMS-Net's time × time attention; None: HAMS-Net's default of 640-sample
        windows (exact full attention up to 640 samples). Pass a window at least as long as the input for
        full attention at any length.
    hams_qk_norm : bool, default True
        QK-norm in HAMS-Net's position attention: queries and keys layer-normalised over the channels and the
        scores scaled by 1/sqrt(channels), so that they stay bounded while the activations grow. The official code
        has unscaled DANet scores (False), whose growth with the square of HAMS-Net's unnormalised activations made
        training diverge at the swept learning rate; see :class:`~dmf2mel.models.hams.PositionAttention`.
    checkpoint_activations : bool, default True (False in :meth:`small`)
        Activation checkpointing while gradients are recorded: the stem feed-forward, every DC-FAM repeat and the
        convMamba feed-forwards keep only their inputs and are recomputed in the backward pass (dropout masks
        reproduced from the saved RNG state), so outputs and gradients are unchanged; these hold most of the
        activation memory for a small share of the compute. Attention weights (SplineMap attention, HAMS-Net's
        position attention) are never kept by the numba row kernels (:mod:`dmf2mel.models.attention_kernels`);
        where attention runs on torch ops (``DMF2MEL_KERNELS=torch``, other devices) this switch also recomputes
        them instead of keeping them. No effect under ``torch.no_grad``.
    """

    n_chans: int = 64
    n_mels: int = 10
    n_subjects: int = 85
    d_model: int = 64
    n_heads: int = 2
    d_inner: int = 1024
    stem_kernel_size: int = 9
    dropout: float = 0.5
    attn_dropout: float = 0.1
    d_state: int = 128
    d_conv: int = 4
    expand: int = 2
    d_ff_mamba: int = 2048
    convmamba_kernel_size: int = 7
    n_hams_repeats: int = 6
    n_dcfam_repeats: int = 4
    n_cross_layers: int = 6
    n_convmamba_repeats: int = 2
    convmamba_last_residual: bool = False
    convmamba_output_dropout: bool = True
    share_hams: bool = True
    share_dcfam: bool = True
    share_convmamba: bool = True
    share_fusion_self_attention: bool = True
    share_first_cross_attention: bool = True
    use_dcfam: bool = True
    use_hams: bool = True
    use_splinemap: bool = True
    use_mamba: bool = True
    head: str = "bands"
    subject_dropout: float = 0.1
    scan_backend: str = "auto"
    dcfam_kernel_size: int = 3
    dcfam_n_heads: int = 8
    dcfam_normalise_weights: bool = True
    hams_reduction: int = 16
    hams_n_bottleneck_adaf: int = 3
    share_hams_adaf: bool = True
    hams_position_window: int | None = None
    hams_qk_norm: bool = True
    checkpoint_activations: bool = True

    def __post_init__(self):
        positive = (
            "n_chans", "n_mels", "n_subjects", "d_model", "n_heads", "d_inner", "stem_kernel_size",
            "d_state", "d_conv", "expand", "d_ff_mamba", "convmamba_kernel_size", "n_cross_layers",
            "dcfam_kernel_size", "dcfam_n_heads", "hams_reduction",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UserError(f"DMF2MelConfig.{name} must be a positive integer, got {value!r}")
        for name in ("n_hams_repeats", "n_dcfam_repeats", "n_convmamba_repeats", "hams_n_bottleneck_adaf"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise UserError(f"DMF2MelConfig.{name} must be an integer >= 0, got {value!r}")
        check_divides("n_heads", self.n_heads, "d_model", self.d_model, "DMF2MelConfig")
        check_divides("dcfam_n_heads", self.dcfam_n_heads, "d_model", self.d_model, "DMF2MelConfig")
        if self.dcfam_kernel_size % 2 == 0:
            raise UserError(f"DMF2MelConfig.dcfam_kernel_size must be odd, got {self.dcfam_kernel_size}")
        if self.head not in HEADS:
            raise UserError(f"DMF2MelConfig.head must be one of {HEADS}, got {self.head!r}")
        if self.scan_backend not in BACKENDS:
            raise UserError(f"DMF2MelConfig.scan_backend must be one of {BACKENDS}, got {self.scan_backend!r}")
        for name in ("dropout", "attn_dropout", "subject_dropout"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise UserError(f"DMF2MelConfig.{name} must be in [0, 1), got {value!r}")
        for name in ("checkpoint_activations", "hams_qk_norm"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"DMF2MelConfig.{name} must be True or False, got {getattr(self, name)!r}")
        window = self.hams_position_window
        if window is not None and (not isinstance(window, int) or window < 1):
            raise UserError(f"DMF2MelConfig.hams_position_window must be None or a positive integer, got {window!r}")

    @classmethod
    def paper(cls, **overrides: Any) -> DMF2MelConfig:
        """The official sizes, repeat counts and weight sharing (these are the field defaults)."""
        return cls(**overrides)

    @classmethod
    def small(cls, **overrides: Any) -> DMF2MelConfig:
        """A narrow, shallow variant that trains in minutes on two CPU cores (for the book)."""
        sizes = dict(
            d_model=32,
            d_inner=128,
            dropout=0.2,
            d_state=16,
            d_ff_mamba=128,
            n_hams_repeats=2,
            n_dcfam_repeats=2,
            n_cross_layers=2,
            n_convmamba_repeats=1,
            hams_reduction=8,
            hams_n_bottleneck_adaf=1,
            # with one pass, the official "no residual on the last pass" would leave nothing that skips
            # convMamba; the official two-pass model keeps a residual around its first pass, and so does this one
            convmamba_last_residual=True,
            # its batch-16 step peaks near 2.2 GB anyway; checkpointing would cost ~25 % more CPU time
            checkpoint_activations=False,
        )
        return cls(**{**sizes, **overrides})

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-serialisable dict (saved next to every checkpoint)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DMF2MelConfig:
        """Rebuild a config from :meth:`to_dict` output; missing fields take their defaults.

        Raises
        ------
        UserError
            On a key that is not a field (e.g. a checkpoint of another model or version).
        """
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(f"DMF2MelConfig.from_dict: unknown keys {unknown}; expected a subset of {sorted(known)}")
        return cls(**values)


def sinusoidal_position_encoding(
    length: int, d_model: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Sine/cosine position encoding of Vaswani et al. (2017), for any length.

    Returns
    -------
    (length, d_model): even features ``sin(t / base^(2i/d))``, odd features the matching cosines.
    """
    position = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    pair_index = torch.arange(0, d_model, 2, device=device, dtype=torch.float32)
    frequency = torch.exp(-math.log(POSITION_ENCODING_BASE) * pair_index / d_model)
    angle = position * frequency  # (length, ceil(d_model / 2))
    encoding = torch.zeros(length, d_model, device=device, dtype=torch.float32)
    encoding[:, 0::2] = torch.sin(angle)
    encoding[:, 1::2] = torch.cos(angle[:, : d_model // 2])
    return encoding.to(dtype)


class ConvFeedForward(nn.Module):
    """Position-wise convolutional feed-forward with pre-LayerNorm and a residual.

    ``x + Dropout(Conv1d_k1(ReLU(Conv1d_k(LN(x)))))`` with ``d_model -> d_inner -> d_model`` channels.

    Shapes: ``(batch, time, d_model) -> (batch, time, d_model)``.
    """

    def __init__(self, d_model: int, d_inner: int, kernel_size: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.expand = nn.Conv1d(d_model, d_inner, kernel_size, padding="same")
        self.contract = nn.Conv1d(d_inner, d_model, kernel_size=1)
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, time, d_model) -> (batch, time, d_model)."""
        hidden = torch.relu(self.expand(self.norm(x).transpose(1, 2)))
        return x + self.dropout(self.contract(hidden).transpose(1, 2))


def repeated_blocks(make: Callable[[], nn.Module], n_repeats: int, share: bool) -> nn.ModuleList:
    """``n_repeats`` blocks: one instance listed ``n_repeats`` times when ``share``, else fresh ones.

    A shared instance appears once in ``parameters()`` (and so in optimisers and parameter counts).
    """
    if share:
        return nn.ModuleList([make()] * n_repeats if n_repeats else [])
    return nn.ModuleList([make() for _ in range(n_repeats)])


class DMF2Mel(nn.Module):
    """DMF2Mel: EEG ``(batch, time, n_chans)`` to mel spectrogram ``(batch, time, n_mels)``.

    1. Stem: input projection (if ``n_chans != d_model``) giving ``x``; ``c = x + s`` with ``s`` the
       layer-normed subject embedding; ``y = LN(SplineMapAttention(query = x + position, key/value = c))``
       (one LayerNorm for ``s`` and ``y``); ``h = c + y + FFN(y)`` with ``FFN`` the convolutional
       feed-forward, which has its own residual (so ``y`` enters twice, as in the official code).
    2. Branches: HAMS-Net and DC-FAM, each applied repeatedly; every repeat adds the branch input ``h`` to the
       block's output, ``z <- h + block(z)``, and the blocks have no residual of their own: one identity path per
       repeat. (The official DC-FAM loop is this one; the official HAMS-Net adds its input inside the module too,
       see :mod:`dmf2mel.models.hams`.)
    3. Fusion: self-attention on each branch, then the cross-attention chain ``CROSS_ATTENTION_CHAIN``
       (its first layer is the self-attention layer again, with ``share_first_cross_attention``).
    4. convMamba, applied repeatedly; every pass but the last adds its input (official: ``y = m(x) + x``,
       then ``m(y)``; ``convmamba_last_residual`` adds it around the last pass too).
    5. Head: Linear ``d_model -> n_mels`` (or ``-> 1`` with ``head="single"``).

    Parameters
    ----------
    config : DMF2MelConfig, optional
        Defaults to :meth:`DMF2MelConfig.paper`.

    Notes
    -----
    Subjects: ``subject`` is a LongTensor ``(batch,)`` of indices in ``[0, n_subjects)``, with -1
    meaning "unknown subject"; ``None`` means all unknown. Unknown subjects use a learned embedding
    row (index ``n_subjects``) that subject dropout trains.
    """

    def __init__(self, config: DMF2MelConfig | None = None):
        super().__init__()
        config = DMF2MelConfig.paper() if config is None else config
        self.config = config
        d = config.d_model

        def attention() -> SplineMapAttention:
            return SplineMapAttention(
                d_model=d,
                n_heads=config.n_heads,
                dropout=config.dropout,
                attn_dropout=config.attn_dropout,
                use_splinemap=config.use_splinemap,
                checkpoint_weights=config.checkpoint_activations,
            )

        # 1. stem
        self.input_proj = nn.Linear(config.n_chans, d) if config.n_chans != d else nn.Identity()
        self.subject_embedding = nn.Embedding(config.n_subjects + 1, d)
        self.subject_norm = nn.LayerNorm(d)
        self.stem_attention = attention()
        # one LayerNorm for the subject code and the attention output, as in the official code
        self.stem_norm = self.subject_norm
        self.stem_ffn = ConvFeedForward(d, config.d_inner, config.stem_kernel_size, config.dropout)

        # 2. branches; a switched-off branch has no blocks, i.e. is the identity
        n_hams = config.n_hams_repeats if config.use_hams else 0
        self.hams = repeated_blocks(
            lambda: HAMSNet(
                d_model=d,
                reduction=config.hams_reduction,
                n_bottleneck_adaf=config.hams_n_bottleneck_adaf,
                position_window=config.hams_position_window,
                share_adaf=config.share_hams_adaf,
                qk_norm=config.hams_qk_norm,
                checkpoint_weights=config.checkpoint_activations,
            ),
            n_hams,
            config.share_hams,
        )
        n_dcfam = config.n_dcfam_repeats if config.use_dcfam else 0
        self.dcfam = repeated_blocks(
            lambda: DCFAM(
                d_model=d,
                n_heads=config.dcfam_n_heads,
                kernel_size=config.dcfam_kernel_size,
                normalise_weights=config.dcfam_normalise_weights,
                attn_dropout=config.attn_dropout,
            ),
            n_dcfam,
            config.share_dcfam,
        )

        # 3. fusion
        self.hams_self_attention = attention()
        self.dcfam_self_attention = self.hams_self_attention if config.share_fusion_self_attention else attention()
        reused = [self.hams_self_attention] if config.share_first_cross_attention else []
        self.cross_attention = nn.ModuleList(reused + [attention() for _ in range(config.n_cross_layers - len(reused))])

        # 4. convMamba
        self.convmamba = repeated_blocks(
            lambda: ConvMamba(
                d,
                d_ff=config.d_ff_mamba,
                dropout=config.dropout,
                kernel_size=config.convmamba_kernel_size,
                use_mamba=config.use_mamba,
                d_state=config.d_state,
                d_conv=config.d_conv,
                expand=config.expand,
                scan_backend=config.scan_backend,
                checkpoint_feed_forward=config.checkpoint_activations,
                output_dropout=config.convmamba_output_dropout,
            ),
            config.n_convmamba_repeats,
            config.share_convmamba,
        )

        # 5. head
        self.head = nn.Linear(d, config.n_mels if config.head == "bands" else 1)

    @property
    def unknown_subject(self) -> int:
        """Row of the subject embedding used for unknown subjects (and for -1 / None)."""
        return self.config.n_subjects

    def forward(self, eeg: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruct the mel spectrogram.

        Parameters
        ----------
        eeg : (batch, time, n_chans) float
            Time-major EEG.
        subject : (batch,) LongTensor or None
            Subject indices in ``[0, n_subjects)``; -1 (or None for the whole batch) = unknown.

        Returns
        -------
        (batch, time, n_mels), or (batch, time, 1) with ``head="single"``.
        """
        subject = self._subject_ids(eeg, subject)
        h = self._stem(eeg, subject)
        # each repeat adds the branch input h once (the official loops); the blocks have no residual of their own
        hams_out = h
        for block in self.hams:
            # not checkpointed: a HAMS-Net pass costs more to recompute than its activations cost to keep
            hams_out = h + block(hams_out)
        dcfam_out = h
        for block in self.dcfam:
            dcfam_out = h + self._run(block, dcfam_out)
        fused = self._fuse(hams_out, dcfam_out)
        last = len(self.convmamba) - 1
        for index, block in enumerate(self.convmamba):
            # official: every pass but the last adds its input
            residual = index < last or self.config.convmamba_last_residual
            fused = block(fused) + fused if residual else block(fused)
        return self.head(fused)

    def _run(self, block: nn.Module, *inputs: torch.Tensor | None) -> torch.Tensor:
        """``block(*inputs)``, checkpointed when the config asks for it and gradients are recorded."""
        if self.config.checkpoint_activations and torch.is_grad_enabled():
            # non-reentrant checkpointing restores the RNG state before recomputing, so dropout repeats exactly
            return checkpoint(block, *inputs, use_reentrant=False)
        return block(*inputs)

    def _subject_ids(self, eeg: torch.Tensor, subject: torch.Tensor | None) -> torch.Tensor:
        """Validate the inputs; ids with -1 (and None) mapped to the unknown row, subject dropout applied."""
        check_eeg(eeg, self.config.n_chans, "DMF2Mel")
        batch = eeg.shape[0]
        if subject is None:
            return torch.full((batch,), self.unknown_subject, dtype=torch.long, device=eeg.device)
        if not isinstance(subject, torch.Tensor) or subject.is_floating_point() or subject.is_complex():
            raise DataError(f"DMF2Mel: subject must be an integer tensor of shape ({batch},) or None, got {subject!r}")
        if subject.shape != (batch,):
            raise DataError(f"DMF2Mel: subject must have shape ({batch},) to match eeg, got {tuple(subject.shape)}")
        subject = subject.to(device=eeg.device, dtype=torch.long)
        bad = (subject < -1) | (subject >= self.config.n_subjects)
        if bad.any():
            raise DataError(
                f"DMF2Mel: subject ids must be in [0, {self.config.n_subjects}) or -1 (unknown), "
                f"got {subject[bad].tolist()}"
            )
        subject = torch.where(subject == -1, self.unknown_subject, subject)
        if self.training and self.config.subject_dropout > 0:
            dropped = torch.rand(batch, device=eeg.device) < self.config.subject_dropout
            subject = torch.where(dropped, self.unknown_subject, subject)
        return subject

    def _stem(self, eeg: torch.Tensor, subject: torch.Tensor) -> torch.Tensor:
        """(batch, time, n_chans), ids (batch,) -> (batch, time, d_model)."""
        x = self.input_proj(eeg)
        position = sinusoidal_position_encoding(x.shape[1], self.config.d_model, x.device, x.dtype)
        subject_code = self.subject_norm(self.subject_embedding(subject))[:, None, :]
        conditioned = x + subject_code
        attended = self.stem_norm(self.stem_attention(x + position, conditioned))
        # the official sum: the feed-forward has its own residual and the attended features are added once more
        return conditioned + attended + self._run(self.stem_ffn, attended)

    def _fuse(self, hams_out: torch.Tensor, dcfam_out: torch.Tensor) -> torch.Tensor:
        """Self-attention on each branch, then the cross-attention chain. Shapes (batch, time, d_model)."""
        streams = {
            "hams": self.hams_self_attention(hams_out),
            "dcfam": self.dcfam_self_attention(dcfam_out),
        }
        for index, layer in enumerate(self.cross_attention):
            query, key_value = CROSS_ATTENTION_CHAIN[index % len(CROSS_ATTENTION_CHAIN)]
            streams["fused"] = layer(streams[query], streams[key_value])
        return streams["fused"]


__all__ = [
    "CROSS_ATTENTION_CHAIN",
    "ConvFeedForward",
    "DMF2Mel",
    "DMF2MelConfig",
    "HEADS",
    "repeated_blocks",
    "sinusoidal_position_encoding",
]


class SingleHeadBroadcast(DMF2Mel):
    """DMF2Mel with the official one-channel head, its output repeated over the mel bands.

    ``(batch, time, n_chans) -> (batch, time, n_mels)``: every band gets the same predicted envelope,
    which is how the official code scores its single channel against 10 bands. It has the parameters
    (and parameter names) of ``DMF2Mel(config)`` with ``config.head == "single"``; the trainer, the
    metrics and ``predict`` see a 10-band model. This is the ``dmf2mel-single-head`` ablation.
    """

    def __init__(self, config: DMF2MelConfig) -> None:
        if config.head != "single":
            raise UserError(f"SingleHeadBroadcast needs DMF2MelConfig(head='single'), got head={config.head!r}")
        super().__init__(config)

    def forward(self, eeg: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(eeg, subject).expand(-1, -1, self.config.n_mels)
