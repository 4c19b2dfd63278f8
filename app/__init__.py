"""JMedLLM Desk: a local Japanese/English medical question-answering workstation.

The app runs a GGUF model through llama.cpp (llama-cpp-python) on one GPU or the CPU,
serves a bilingual Gradio UI bound to 127.0.0.1, and keeps everything on the machine.
"""

__version__ = "0.6.0"
