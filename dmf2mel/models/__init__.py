"""DMF2Mel and its building blocks, one module per file (see ``shared/ARCHITECTURE.md``)."""

from dmf2mel.models.mamba import BiMamba, ConvMamba, Mamba

__all__ = ["BiMamba", "ConvMamba", "Mamba"]
