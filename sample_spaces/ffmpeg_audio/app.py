"""Calls the ffmpeg binary (the Hub installs it for Gradio Spaces) on a WAV it generates."""

import math
import struct
import subprocess
import tempfile
import wave
from pathlib import Path

import gradio as gr


def convert(seconds: float) -> str:
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder, "tone.wav"), Path(folder, "tone.flac")
        with wave.open(str(source), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            frames = int(8000 * seconds)
            out.writeframes(
                b"".join(
                    struct.pack("<h", int(8000 * math.sin(i * 440 * 2 * math.pi / 8000)))
                    for i in range(frames)
                )
            )
        subprocess.run(
            ["ffmpeg", "-loglevel", "error", "-i", str(source), str(target)], check=True
        )
        return f"flac: {target.stat().st_size > 0}, {frames} samples"


demo = gr.Interface(convert, gr.Number(value=0.5), "text", api_name="convert")

if __name__ == "__main__":
    demo.launch()
