"""A Gradio 4 Space: Blocks, a button and numpy (requirements.txt also lists gradio)."""

import gradio as gr
import numpy as np


def total(numbers: str) -> str:
    values = np.array([float(x) for x in numbers.split(",") if x.strip()])
    return f"sum={values.sum():g}"


with gr.Blocks(title="Gradio 4") as demo:
    numbers = gr.Textbox(label="Comma-separated numbers")
    result = gr.Textbox(label="Sum")
    gr.Button("Add").click(total, numbers, result, api_name="total")

demo.launch()
