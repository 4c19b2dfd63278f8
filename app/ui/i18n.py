"""Japanese and English UI text. Every visible label comes from here."""

from __future__ import annotations

UI_LANGUAGES = {"日本語": "ja", "English": "en"}

NOTICE = (
    "**⚕️ 診断ではありません。臨床意思決定の支援ツールです。** 最終判断は必ず担当医が行ってください。"
    "患者情報はこの端末の外に送信されません。  \n"
    "**⚕️ Decision support, not a diagnosis.** The treating physician makes every clinical decision. "
    "No text leaves this machine."
)

DEMO_WARNING = (
    "⚠️ **デモモデル（Qwen2.5-Coder-0.5B）を使用中：臨床には使えません。** 医学的な質問に正しく答えるには小さすぎます。"
    "Model タブで JMedLLM-v1-7B などの GGUF を読み込んでください。  \n"
    "⚠️ **Demo model (Qwen2.5-Coder-0.5B) loaded: not for clinical use.** It is far too small to answer "
    "medical questions well. Load a real GGUF (e.g. JMedLLM-v1-7B) in the Model tab."
)

TEXT: dict[str, dict[str, str]] = {
    "title": {"ja": "## JMedLLM Desk — ローカル医療LLM", "en": "## JMedLLM Desk — local medical LLM"},
    "ui_language": {"ja": "表示言語 / UI language", "en": "UI language / 表示言語"},
    "tab_ask": {"ja": "質問", "en": "Ask"},
    "tab_model": {"ja": "モデル", "en": "Model"},
    "tab_benchmark": {"ja": "ベンチマーク", "en": "Benchmark"},
    "question": {"ja": "質問", "en": "Question"},
    "question_placeholder": {
        "ja": "例：55歳の男性。胸痛を主訴に来院した。まず行うべき検査はどれか。",
        "en": "e.g. A 55-year-old man presents with chest pain. Which test should be done first?",
    },
    "choices": {"ja": "選択肢（任意、1行に1つ）", "en": "Choices (optional, one per line)"},
    "answer_language": {"ja": "回答言語", "en": "Answer language"},
    "template": {"ja": "プロンプトテンプレート（選択式）", "en": "Prompt template (multiple choice)"},
    "shots": {"ja": "例示数（few-shot）", "en": "Examples (few-shot)"},
    "max_tokens": {"ja": "最大トークン数", "en": "Max new tokens"},
    "history": {"ja": "質問履歴をこの端末のSQLiteに保存する", "en": "Keep question history in the local SQLite database"},
    "ask": {"ja": "質問する", "en": "Ask"},
    "stop": {"ja": "停止", "en": "Stop"},
    "answer": {"ja": "回答", "en": "Answer"},
    "chosen": {"ja": "選ばれた選択肢", "en": "Chosen option"},
    "answered_by": {"ja": "回答したモデル", "en": "Answered by"},
    "model_path": {"ja": "GGUFファイルのパス", "en": "GGUF file path"},
    "model_pick": {"ja": "モデルフォルダ内のファイル", "en": "File in the models folder"},
    "gpu_layers": {"ja": "GPUレイヤー数（auto または数値）", "en": "GPU layers (auto or a number)"},
    "context": {"ja": "コンテキスト長（トークン）", "en": "Context size (tokens)"},
    "load": {"ja": "読み込む", "en": "Load"},
    "current_model": {"ja": "現在のモデル", "en": "Current model"},
    "busy": {
        "ja": "⏳ モデルは別の質問に回答中です。終了を待つか、停止を押してください。",
        "en": "⏳ The model is answering another question. Wait for it to finish or press Stop.",
    },
    "abstained": {"ja": "どの選択肢にも一致しません（棄権）", "en": "Matches none of the options (abstained)"},
    "stopped": {"ja": "（停止しました）", "en": "(stopped)"},
}

LANGUAGE_CHOICES = {
    "ja": [("自動判定", "auto"), ("日本語", "ja"), ("英語", "en")],
    "en": [("Detect", "auto"), ("Japanese", "ja"), ("English", "en")],
}


def t(key: str, lang: str) -> str:
    """The text for ``key`` in ``lang`` ("ja" or "en")."""
    return TEXT[key][lang]
