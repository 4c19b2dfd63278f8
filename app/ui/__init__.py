"""The Gradio UI: Ask, Model and Benchmark tabs, Japanese/English labels, offline by design."""
