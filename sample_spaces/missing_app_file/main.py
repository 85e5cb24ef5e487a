"""A valid app saved under the wrong name: the README expects the default app.py."""

import gradio as gr


def shout(text: str) -> str:
    return text.upper()


demo = gr.Interface(fn=shout, inputs="text", outputs="text", api_name="predict")

if __name__ == "__main__":
    demo.launch()
