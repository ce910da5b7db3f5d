"""Run the repository's models on synthetic inputs, with the files found by modelsync.

    modelsync sync && python examples/demo.py

- vad (Silero VAD; the half-precision variant on CUDA machines, full
  precision elsewhere, as models.toml declares): one second of silence, then a second of a synthetic
  voiced sound (a glottal pulse train through vowel formants, syllable-rate
  amplitude), then silence again; prints the speech probability per 32 ms
  frame, which should rise for the voiced part only.
- ocr-det (PP-OCRv4 text detector): a white page with three lines of
  glyph-like strokes; prints how much of the text lines and of the blank page
  it marks as text.
"""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort

import modelsync

RATE = 16_000
FRAME = 512  # samples per VAD frame at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous frame the model sees before each frame


def synthetic_speech(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A vowel-like sound: 120 Hz pulses through formant resonators, 4 Hz syllables."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    pitch = 120 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))  # a little intonation
    phase = np.cumsum(pitch / RATE)
    pulses = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)
    signal = pulses
    for formant, bandwidth in ((700, 110), (1220, 120), (2600, 160)):
        r = np.exp(-np.pi * bandwidth / RATE)
        a1, a2 = -2 * r * np.cos(2 * np.pi * formant / RATE), r * r
        out = np.zeros(n)
        for i in range(n):  # a two-pole resonator
            out[i] = signal[i] - a1 * out[i - 1] - a2 * out[i - 2] if i > 1 else signal[i]
        signal = out
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 4 * t - np.pi / 2)
    signal = signal * envelope + 0.01 * rng.standard_normal(n)
    return (0.5 * signal / np.abs(signal).max()).astype(np.float32)


def run_vad() -> None:
    model = modelsync.path("vad")
    print(f"vad: {model}")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    wanted = [item.name for item in session.get_inputs()]  # the fp16 variant has no `sr` input
    rng = np.random.default_rng(0)
    silence = (0.001 * rng.standard_normal(RATE)).astype(np.float32)
    audio = np.concatenate([silence, synthetic_speech(1.0, rng), silence])
    state = np.zeros((2, 1, 128), dtype=np.float32)
    context = np.zeros((1, CONTEXT), dtype=np.float32)
    rows = []
    for start in range(0, len(audio) - FRAME + 1, FRAME):
        frame = audio[start : start + FRAME][None, :]
        inputs = {"input": np.concatenate([context, frame], axis=1), "state": state, "sr": np.array(RATE, dtype=np.int64)}
        probability, state = session.run(None, {name: inputs[name] for name in wanted})
        context = frame[:, -CONTEXT:]
        rows.append((start / RATE, float(probability[0, 0])))
    for seconds, probability in rows:
        bar = "#" * round(probability * 40)
        print(f"  {seconds:5.2f}s  {probability:4.2f}  {bar}")
    voiced = [p for s, p in rows if 1.0 <= s < 2.0]
    quiet = [p for s, p in rows if s < 1.0 or s >= 2.1]
    print(f"  mean speech probability: voiced {np.mean(voiced):.2f}, silence {np.mean(quiet):.2f}")


def run_ocr_detector() -> None:
    model = modelsync.path("ocr-det")
    print(f"ocr-det: {model}")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    page = np.full((320, 320, 3), 255, dtype=np.float32)
    rng = np.random.default_rng(1)
    for top in (60, 140, 220):  # three lines of glyph-like strokes: bars and diagonals
        x = 30
        while x < 280:
            width = int(rng.integers(10, 16))
            for _ in range(int(rng.integers(2, 4))):
                kind = rng.integers(0, 3)
                if kind == 0:
                    column = x + int(rng.integers(0, width - 2))
                    page[top : top + 20, column : column + 2] = 0
                elif kind == 1:
                    row = top + int(rng.integers(0, 18))
                    page[row : row + 2, x : x + width] = 0
                else:
                    for i in range(20):
                        column = x + i * width // 20
                        page[top + i, column : column + 2] = 0
            x += width + 4
    mean = np.array([0.485, 0.456, 0.406]) * 255
    std = np.array([0.229, 0.224, 0.225]) * 255
    tensor = ((page - mean) / std).transpose(2, 0, 1)[None].astype(np.float32)
    (heatmap,) = session.run(None, {"x": tensor})
    marked = heatmap[0, 0] > 0.3
    lines = np.zeros(marked.shape, dtype=bool)
    for top in (60, 140, 220):
        lines[top : top + 20, 30:280] = True
    print(f"  marked as text: {marked[lines].mean():.0%} of the text lines, {marked[~lines].mean():.0%} of the blank page")


def main() -> int:
    try:
        run_vad()
        run_ocr_detector()
    except modelsync.NotSyncedError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
