"""Builds fine, then crashes at import time, before the server starts."""

import gradio as gr

WEIGHTS_PATH = "weights/model.safetensors"


def load_model(path: str) -> object:
    raise RuntimeError("model weights not found: this sample crashes on purpose")


model = load_model(WEIGHTS_PATH)

demo = gr.Interface(fn=lambda text: text, inputs="text", outputs="text", api_name="predict")

if __name__ == "__main__":
    demo.launch()
