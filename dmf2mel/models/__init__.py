"""DMF2Mel and its building blocks, one module per file (the book's appendix ``book/architecture.md`` maps them).

>>> from dmf2mel.models import DMF2Mel, DMF2MelConfig, summary
>>> model = DMF2Mel(DMF2MelConfig.small(n_subjects=10))
>>> mel = model(eeg, subject)  # (batch, time, 64), (batch,) -> (batch, time, 10)  # doctest: +SKIP
"""

from dmf2mel.models.attention import SplineMapAttention
from dmf2mel.models.baselines import VLAAI, CNNBaseline, LinearDecoder
from dmf2mel.models.dcfam import DCFAM
from dmf2mel.models.dmf2mel import DMF2Mel, DMF2MelConfig, SingleHeadBroadcast
from dmf2mel.models.hams import HAMSNet
from dmf2mel.models.kan import AGKANLinear, KANLinear
from dmf2mel.models.mamba import BiMamba, ConvMamba, Mamba
from dmf2mel.models.registry import MODELS, build_model, model_label
from dmf2mel.models.summary import SummaryRow, format_summary, summary

__all__ = [
    "AGKANLinear",
    "BiMamba",
    "CNNBaseline",
    "ConvMamba",
    "DCFAM",
    "DMF2Mel",
    "DMF2MelConfig",
    "HAMSNet",
    "KANLinear",
    "LinearDecoder",
    "MODELS",
    "Mamba",
    "SingleHeadBroadcast",
    "SplineMapAttention",
    "SummaryRow",
    "VLAAI",
    "build_model",
    "format_summary",
    "model_label",
    "summary",
]
