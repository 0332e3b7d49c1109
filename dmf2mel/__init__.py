"""dmf2mel: DMF2Mel (Fan et al., ACM MM 2025) rebuilt, tested and taught.

Reconstructs the 10-band mel spectrogram of heard speech from 64-channel EEG.
Subpackages: ``data`` (features, the SparrKULee layout, the simulated corpus), ``models``
(DMF2Mel and baselines), ``viz`` (figures for the book); modules ``losses``, ``metrics``,
``train``, ``evaluate`` and the command line (``python -m dmf2mel``).
"""

__version__ = "0.1.0"

from dmf2mel import numba_cache
from dmf2mel.errors import DataError, UserError

numba_cache.configure()  # before any kernel is compiled: a read-only package and home must not fail the import

__all__ = ["DataError", "UserError", "__version__"]
