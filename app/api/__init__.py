"""The OpenAI-compatible HTTP API that ``jmedllm serve`` offers at ``/v1`` beside the UI."""
