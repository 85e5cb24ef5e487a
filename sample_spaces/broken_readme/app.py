"""A valid app; this Space fails only because its README front matter is invalid YAML."""

import gradio as gr


def echo(text: str) -> str:
    return text


demo = gr.Interface(fn=echo, inputs="text", outputs="text", api_name="predict")

if __name__ == "__main__":
    demo.launch()
