"""The parameters of the built-in corpus: what decides it besides the seed, and the two presets.

:class:`SimulationParams` holds the sizes (subjects, stories, minutes), the strength of the auditory
response and every noise and artifact level; :data:`PRESETS` names the two regimes, ``teaching``
(clear effects) and ``sparrkulee`` (as hard as the real data); :func:`preset_params` is a preset with
its sizes overridden and checked. The simulation itself is :mod:`dmf2mel.data.simulate`; writing and
caching a corpus is :mod:`dmf2mel.data.corpus`. This module imports neither, nor MNE, so the command
line can list the presets without loading the simulation.
"""

from __future__ import annotations

import dataclasses

from dmf2mel.data import speech
from dmf2mel.errors import UserError
from dmf2mel.validation import check_int, check_option, check_positive_number


@dataclasses.dataclass(frozen=True)
class SimulationParams:
    """Everything that decides a corpus besides the seed (part of its cache key).

    Sizes
        ``n_subjects`` (incl. ``n_held_out`` subjects held out entirely), ``n_stories`` stories of
        ``minutes`` minutes; each subject hears ``stories_per_subject`` of them, always the first.
    Signal
        ``source_nam``: RMS moment of each auditory dipole (nA*m, before the subject's gain).
    Noise
        ``n_background_sources`` dipoles with 1/f time courses of RMS ``background_nam`` (nA*m);
        two alpha dipoles with bursts of RMS up to ``alpha_nam``; ``blinks_per_minute`` blinks of
        peak ``blink_uv`` (microvolts at the frontopolar electrodes); ``muscle_per_minute`` bursts
        of RMS ``muscle_uv`` at the nearest temporal electrode; a 50 Hz line of amplitude about
        ``line_uv``; drifts of RMS ``drift_uv``; white amplifier noise of RMS ``sensor_uv``.
    """

    n_subjects: int = 8
    n_held_out: int = 2
    n_stories: int = 4
    minutes: float = 2.5
    stories_per_subject: int = 3
    source_nam: float = 10.0
    background_nam: float = 12.0
    n_background_sources: int = 60
    alpha_nam: float = 60.0
    blinks_per_minute: float = 12.0
    blink_uv: float = 120.0
    muscle_per_minute: float = 3.0
    muscle_uv: float = 30.0
    line_uv: float = 20.0
    drift_uv: float = 30.0
    sensor_uv: float = 1.0


PRESETS = {
    "teaching": SimulationParams(),
    "sparrkulee": SimulationParams(source_nam=2.0),
}


def preset_params(
    preset: str = "teaching",
    n_subjects: int | None = None,
    n_held_out: int | None = None,
    n_stories: int | None = None,
    minutes: float | None = None,
) -> SimulationParams:
    """The parameters of ``preset`` with the given sizes overridden (None keeps the preset's)."""
    check_option("preset", preset, PRESETS)
    overrides = dict(n_subjects=n_subjects, n_held_out=n_held_out, n_stories=n_stories, minutes=minutes)
    params = dataclasses.replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})
    check_int("n_subjects", params.n_subjects, minimum=1)
    if not 0 <= check_int("n_held_out", params.n_held_out) < params.n_subjects:
        raise UserError(
            f"n_held_out must be between 0 and the number of subjects minus one ({params.n_subjects - 1}), "
            f"got {params.n_held_out}",
            parameter="n_held_out",
        )
    check_int("n_stories", params.n_stories, minimum=1)
    check_positive_number("minutes", params.minutes)  # NaN and infinity too
    if params.minutes * 60 < speech.MIN_STIMULUS_SECONDS:
        raise UserError(
            f"minutes must give at least {speech.MIN_STIMULUS_SECONDS:g} s per story, got {params.minutes} min",
            parameter="minutes",
        )
    return dataclasses.replace(params, stories_per_subject=min(params.stories_per_subject, params.n_stories))
