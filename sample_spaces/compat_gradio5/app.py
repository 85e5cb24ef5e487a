"""A Gradio 5 Space: a ChatInterface that echoes, with messages-style history."""

import gradio as gr


def respond(message, history):
    return f"echo {len(history)}: {message}"


demo = gr.ChatInterface(respond, type="messages", title="Gradio 5")

if __name__ == "__main__":
    demo.launch()
