"""A chatbot that streams a deterministic reply one word at a time."""

import time
from collections.abc import Iterator

import gradio as gr

WORD_DELAY_SECONDS = 0.3


def build_reply(message: str, history: list) -> str:
    user_turns = sum(1 for item in history if isinstance(item, dict) and item.get("role") == "user")
    return f"You said: {message}. That is message number {user_turns + 1} in this chat."


def respond(message: str, history: list) -> Iterator[str]:
    words = build_reply(message, history).split(" ")
    for count in range(1, len(words) + 1):
        time.sleep(WORD_DELAY_SECONDS)
        yield " ".join(words[:count])


demo = gr.ChatInterface(
    fn=respond,
    title="Streaming Chatbot",
    description="Replies one word at a time.",
    api_name="chat",
)

if __name__ == "__main__":
    demo.launch()
