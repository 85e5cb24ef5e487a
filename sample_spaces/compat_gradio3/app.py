"""A Gradio 3 Space: gr.Interface as 2023's Spaces wrote it (no queue, REST /run/predict)."""

import gradio as gr


def greet(name):
    return "Hello, " + name + "!"


demo = gr.Interface(fn=greet, inputs="text", outputs="text", title="Gradio 3")
demo.launch()
