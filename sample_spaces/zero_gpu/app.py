"""A ZeroGPU-style Space: `@spaces.GPU` runs the function as is where there is no ZeroGPU."""

import gradio as gr
import spaces


@spaces.GPU
def square(x: float) -> str:
    return f"{x * x:g}"


demo = gr.Interface(square, gr.Number(value=3), "text", api_name="square")

if __name__ == "__main__":
    demo.launch()
