"""A frozen-app example: Silero VAD, found (or fetched) by modelsync, on generated audio.

    python app.py                                   # from a synced checkout
    pyinstaller --noconfirm app.spec && dist/vad-app/vad-app   # frozen (see README.md)

Prints the mean speech probability of one second of near-silence followed by
one second of a generated vowel-like tone (120 Hz pulses through vowel
formants): low for the first, high for the second.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np

import modelsync

if TYPE_CHECKING:
    import onnxruntime

RATE = 16_000
FRAME = 512  # samples per VAD frame at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous frame the model sees before each frame


def vowel_tone(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A voiced sound: ~120 Hz pulses through three vowel formants, four syllables a second."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    phase = np.cumsum(120 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t)) / RATE)  # a little intonation
    signal = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)
    for formant, bandwidth in ((700, 110), (1220, 120), (2600, 160)):
        r = np.exp(-np.pi * bandwidth / RATE)
        a1, a2 = -2 * r * np.cos(2 * np.pi * formant / RATE), r * r
        out = np.zeros(n)
        for i in range(n):  # a two-pole resonator
            out[i] = signal[i] - (a1 * out[i - 1] + a2 * out[i - 2] if i > 1 else 0.0)
        signal = out
    signal = signal * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t - np.pi / 2)) + 0.01 * rng.standard_normal(n)
    return (0.5 * signal / np.abs(signal).max()).astype(np.float32)


def frame_probabilities(session: onnxruntime.InferenceSession, audio: np.ndarray) -> np.ndarray:
    """The speech probability of each 32 ms frame, the model's state carried from frame to frame."""
    wanted = {item.name for item in session.get_inputs()}  # the fp16 variant has no `sr` input
    state = np.zeros((2, 1, 128), dtype=np.float32)
    context = np.zeros((1, CONTEXT), dtype=np.float32)
    probabilities = []
    for start in range(0, len(audio) - FRAME + 1, FRAME):
        frame = audio[start : start + FRAME][None, :]
        inputs = {"input": np.concatenate([context, frame], axis=1), "state": state, "sr": np.array(RATE, dtype=np.int64)}
        probability, state = session.run(None, {name: value for name, value in inputs.items() if name in wanted})
        context = frame[:, -CONTEXT:]
        probabilities.append(float(probability[0, 0]))
    return np.array(probabilities)


def main() -> int:
    try:
        print(f"vad: {modelsync.ensure('vad')}")  # the bundle, or downloaded on first use
        session = modelsync.load("vad")  # an onnxruntime.InferenceSession
    except modelsync.ModelsyncError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    rng = np.random.default_rng(0)
    silence = (0.001 * rng.standard_normal(RATE)).astype(np.float32)
    probabilities = frame_probabilities(session, np.concatenate([silence, vowel_tone(1.0, rng)]))  # a second of each
    half = len(probabilities) // 2
    print(f"speech probability: tone {probabilities[half:].mean():.2f}, silence {probabilities[:half].mean():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
