"""A Gradio 6 Space: an Interface with two inputs."""

import gradio as gr


def repeat(word: str, times: float) -> str:
    return " ".join([word] * int(times))


demo = gr.Interface(
    repeat, [gr.Textbox(label="Word"), gr.Number(label="Times", value=2)], "text", api_name="repeat"
)

if __name__ == "__main__":
    demo.launch()
