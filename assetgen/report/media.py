"""Review media made once per version and cached under ROOT/report/media/.

- ``<content_key>.png``: waveform (min/max envelope) above a log-magnitude spectrogram, 480x160 px;
- ``<content_key>_seam.wav``: loop audition, the last ~1.5 s of the loop region then its first ~1.5 s,
  so a reviewer hears the join exactly as the engine will play it.

Files are written with ``store.atomic.atomic_write``, so an interrupted run never leaves a half-written file
that later runs would take for a cached one. Existing files are never regenerated (keyed by content key).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from assetgen.store.atomic import atomic_write

AUDITION_SIDE_S = 1.5  # seconds on each side of the seam
FIG_SIZE_IN = (4.8, 1.6)  # inches at FIG_DPI -> 480x160 px
FIG_DPI = 100
WAVE_COLUMNS = 480  # envelope buckets: one per horizontal pixel
SPEC_NFFT = 512
SPEC_MAX_FRAMES = 240  # hop grows with length so the STFT cost stays bounded
SPEC_MAX_SR = 16_000  # resample before the STFT: the picture only needs the broad shape
PNG_COLOURS = 48
BG = "#15181d"


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Read a WAV as float32 ``(channels, samples)`` and its sample rate (Hz)."""
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return np.ascontiguousarray(data.T), int(sr)


def envelope(mono: np.ndarray, columns: int = WAVE_COLUMNS) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of ``mono`` in ``columns`` equal buckets (a downsampled waveform for drawing)."""
    n = mono.shape[-1]
    if n == 0:
        return np.zeros(1, np.float32), np.zeros(1, np.float32)
    columns = max(1, min(columns, n))
    usable = (n // columns) * columns
    buckets = mono[:usable].reshape(columns, -1)
    return buckets.min(axis=1), buckets.max(axis=1)


def cheap_spectrogram(mono: np.ndarray, sr: int) -> tuple[np.ndarray, float]:
    """Log-magnitude spectrogram (dB, shape freq x frames) of ``mono`` and the Nyquist (Hz) of the analysed rate.

    Bounded cost whatever the length: resample to <= ``SPEC_MAX_SR`` (soxr) and spread at most
    ``SPEC_MAX_FRAMES`` frames of ``SPEC_NFFT`` over the clip (matplotlib's ``mlab.specgram``).
    """
    import soxr
    from matplotlib import mlab

    if sr > SPEC_MAX_SR and mono.shape[-1] > 64:
        mono = soxr.resample(mono, sr, SPEC_MAX_SR, quality="LQ")
        sr = SPEC_MAX_SR
    nfft = SPEC_NFFT
    if mono.shape[-1] < 2 * nfft:  # very short clips: pad so there are at least two frames
        mono = np.pad(mono, (0, 2 * nfft - mono.shape[-1]))
    hop = max(nfft // 4, (mono.shape[-1] - nfft) // SPEC_MAX_FRAMES + 1)
    spec, _, _ = mlab.specgram(mono, NFFT=nfft, Fs=sr, noverlap=max(0, nfft - hop), mode="magnitude")
    return 20.0 * np.log10(spec + 1e-6), sr / 2.0


def render_png(audio: np.ndarray, sr: int, dest: Path, loop: tuple[int, int] | None = None) -> None:
    """Draw waveform + spectrogram of ``audio`` ``(channels, samples)`` at ``sr`` Hz into the PNG ``dest``.

    ``loop`` (start, end samples) is shaded on the waveform so the reviewer sees the loop region.

    Saved as a ``PNG_COLOURS``-colour palette PNG (Pillow quantize) to keep pages of 1 000+ assets small.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # OO API: no pyplot state, Agg only
    from PIL import Image

    mono = audio.mean(axis=0) if audio.ndim == 2 else audio
    lo, hi = envelope(mono)
    spec, nyquist = cheap_spectrogram(mono, sr)
    duration = max(mono.shape[-1] / sr if sr else 0.0, 1e-6)

    fig = Figure(figsize=FIG_SIZE_IN, dpi=FIG_DPI, facecolor=BG)
    canvas = FigureCanvasAgg(fig)
    wave_ax, spec_ax = fig.subplots(2, 1, gridspec_kw={"height_ratios": [1, 1.4], "hspace": 0.04})
    fig.subplots_adjust(left=0, right=1, top=1, bottom=0)
    wave_ax.fill_between(np.linspace(0.0, duration, lo.shape[0]), lo, hi, color="#5ec4ff", linewidth=0)
    if loop is not None and sr:
        wave_ax.axvspan(loop[0] / sr, loop[1] / sr, color="#ffffff", alpha=0.08, linewidth=0)
        for edge in loop:
            wave_ax.axvline(edge / sr, color="#f2b33d", linewidth=1)
    wave_ax.set_ylim(-1.0, 1.0)
    wave_ax.set_xlim(0.0, duration)
    top = float(spec.max()) if spec.size else 0.0
    spec_ax.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=top - 80.0, vmax=top,
                   extent=(0.0, duration, 0.0, nyquist), interpolation="nearest")
    for ax in (wave_ax, spec_ax):
        ax.set_facecolor(BG)
        ax.set_axis_off()
    canvas.draw()
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    palette = image.convert("RGB").quantize(PNG_COLOURS)
    atomic_write(dest, lambda tmp: palette.save(tmp, format="PNG", optimize=True))


def seam_clip(audio: np.ndarray, sr: int, loop_start: int, loop_end: int,
              side_s: float = AUDITION_SIDE_S) -> np.ndarray:
    """Loop audition: the last ``side_s`` seconds of ``[loop_start, loop_end)`` then its first ``side_s``.

    Sides shrink to half the loop length for short loops. Raises ValueError on an empty/invalid region.
    """
    n = audio.shape[-1]
    start, end = max(0, int(loop_start)), min(n, int(loop_end))
    if end - start < 2:
        raise ValueError(f"loop region [{loop_start}, {loop_end}) is empty for {n} samples")
    side = min(int(round(side_s * sr)), (end - start) // 2)
    return np.concatenate([audio[:, end - side:end], audio[:, start:start + side]], axis=1)


def ensure_png(wav: Path, dest: Path, loop: tuple[int, int] | None = None) -> bool:
    """Write the waveform/spectrogram PNG for ``wav`` unless ``dest`` exists. True when written."""
    if dest.exists():
        return False
    audio, sr = read_audio(wav)
    render_png(audio, sr, dest, loop=loop)
    return True


def ensure_seam_wav(wav: Path, loop_start: int, loop_end: int, dest: Path) -> bool:
    """Write the loop audition WAV (16-bit PCM, source rate) unless ``dest`` exists. True when written."""
    if dest.exists():
        return False
    audio, sr = read_audio(wav)
    clip = seam_clip(audio, sr, loop_start, loop_end)
    atomic_write(dest, lambda tmp: sf.write(tmp, clip.T, sr, subtype="PCM_16", format="WAV"))
    return True
