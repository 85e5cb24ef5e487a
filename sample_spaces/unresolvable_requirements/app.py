"""A valid app; this Space fails only because a requirement cannot be installed."""

import gradio as gr


def reverse(text: str) -> str:
    return text[::-1]


demo = gr.Interface(fn=reverse, inputs="text", outputs="text", api_name="predict")

if __name__ == "__main__":
    demo.launch()
