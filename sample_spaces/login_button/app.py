"""Sign in with Hugging Face: gr.LoginButton needs the `oauth` extra of gradio."""

import gradio as gr


def greet(profile: gr.OAuthProfile | None) -> str:
    return f"Hello, {profile.name}!" if profile else "Not signed in"


with gr.Blocks() as demo:
    gr.LoginButton()
    greeting = gr.Markdown()
    gr.Button("Who am I?").click(greet, None, greeting, api_name="whoami")

if __name__ == "__main__":
    demo.launch()
