"""The smallest Gradio Space: a text-in, text-out greeting."""

import gradio as gr


def greet(name: str) -> str:
    return f"Hello, {name}!"


demo = gr.Interface(
    fn=greet,
    inputs="text",
    outputs="text",
    title="Hello",
    description="Type a name and get a greeting back.",
    api_name="predict",
)

if __name__ == "__main__":
    demo.launch()
