"""Upload an image and get its grayscale negative back."""

import gradio as gr
import numpy as np
from PIL import Image


def grayscale_negative(image: Image.Image) -> Image.Image:
    gray = np.asarray(image.convert("L"), dtype=np.uint8)
    inverted = 255 - gray
    return Image.fromarray(inverted, mode="L").convert("RGB")


demo = gr.Interface(
    fn=grayscale_negative,
    inputs=gr.Image(type="pil", label="Input image"),
    outputs=gr.Image(type="pil", format="png", label="Grayscale negative"),
    title="Image Filter",
    description="Converts the image to grayscale and inverts it.",
    api_name="predict",
)

if __name__ == "__main__":
    demo.launch()
