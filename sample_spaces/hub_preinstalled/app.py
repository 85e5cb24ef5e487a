"""Uses requests and datasets without a requirements.txt: the Hub preinstalls both."""

import datasets
import gradio as gr
import requests


def describe(words: str) -> str:
    table = datasets.Dataset.from_dict({"word": words.split()})
    return f"requests {requests.__version__.split('.')[0]}.x; {table.num_rows} rows"


demo = gr.Interface(describe, "text", "text", api_name="describe")

if __name__ == "__main__":
    demo.launch()
