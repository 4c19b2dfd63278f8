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

LOAD_ADMIN_ONLY = (
    "🔒 モデルの読み込みは管理者だけが行えます。このサーバーでは管理者以外は現在のモデルを確認できるだけです。"
    "管理者に依頼するか（`jmedllm user add NAME --admin` で登録）、サーバーの端末で "
    "`jmedllm serve --model NAME` を起動し直してください。  \n"
    "🔒 Only an administrator may load models; here you can see the current model only. Ask an administrator "
    "(users added with `jmedllm user add NAME --admin`), or restart `jmedllm serve --model NAME` at the "
    "server's console."
)
LOAD_SERVED_ENGINE = (
    "🔒 このサーバーのモデルは {engine} エンジンが提供しています。モデルを替えるには、サーバーの端末で "
    "`jmedllm serve --engine {engine} --model NAME` を起動し直してください。  \n"
    "🔒 This server's model is served by the {engine} engine. To change it, restart "
    "`jmedllm serve --engine {engine} --model NAME` at the server's console."
)
MODEL_CHOOSE = "⚠️ 先に読み込むモデルを選んでください。 / Choose a model to load first."
MODEL_NOT_LOADED = ("⚠️ モデルを読み込めませんでした（現在のモデルのままです）。 / "
                    "Model not loaded (the current model stays): {error}")  # {error}: text, HTML-escaped
MODEL_CONTEXT_RANGE = ("コンテキスト長は {low:,}〜{high:,} トークンで指定してください（{value:,.10g} は範囲外）。 / "
                       "The context length must be {low:,} to {high:,} tokens, not {value:,.10g}.")
MODEL_STARTED_WITH = "サーバー起動時のモデル / loaded when the server started · {at}"
MODEL_LOADED_BY = "読み込み / loaded by: **{who}** ({address}) · {at}"
LOCAL_USER = "ローカル利用者 / local user"
MODEL_LOADS_HEADERS = [
    "日時 / at (UTC)", "利用者 / user", "アドレス / address", "ファイル / file", "sha256",
    "量子化 / quantization", "結果 / outcome", "メッセージ / message",
]

# The Benchmark tab's line about the chosen question set: both languages at once, as the data can change
# without the page's language being known (a set imported elsewhere, read on page load).
BENCH_DATA_READY = "**{label}** · {n} 問 / questions · {languages} · データ / data {fingerprint}"
BENCH_NO_DATA = (
    "### この端末には IgakuQA のデータがまだありません / No IgakuQA data on this machine yet\n"
    "1. インターネットにつながるパソコンで `https://github.com/jungokasai/IgakuQA` を開き、リポジトリを zip で"
    "ダウンロードします（Code → Download ZIP、または `https://github.com/jungokasai/IgakuQA/archive/refs/heads/"
    "main.zip`）：`IgakuQA-main.zip`。\n"
    "2. その zip を USB メモリや共有フォルダでこの端末に持ってきます。\n"
    "3. 下の **問題セットを取り込む** で取り込むか、サーバーの端末で `jmedllm bench data add IgakuQA-main.zip` "
    "を実行します。再起動せずにすぐ実行できます。\n\n"
    "1. On a computer with internet, open `https://github.com/jungokasai/IgakuQA` and download the repository as "
    "a zip (Code → Download ZIP, or `https://github.com/jungokasai/IgakuQA/archive/refs/heads/main.zip`): "
    "`IgakuQA-main.zip`.\n"
    "2. Carry the zip over to this machine (USB stick or shared folder).\n"
    "3. Import it below (**Import a question set**), or at the server's console with "
    "`jmedllm bench data add IgakuQA-main.zip`. The run button works right after, without a restart.\n\n"
    "詳細 / Details: {error}"
)
BENCH_DATA_FAILED = "⚠️ **{label}** を読み込めません / cannot be read:  \n{error}"
# Japanese for the import problems met most often, shown under the (English) problem in the Japanese UI.
JA_EMPTY_FILE = "ファイルが空です（0 バイト、空行だけ、または見出し行だけ）。問題を書いたファイルを選んでください。"
JA_UNCLOSED_QUOTE = ("この行で開いた引用符（\"）が閉じられていないため、後の行がすべて1つのセルに"
                     "読み込まれてしまいます。引用符を閉じてください（セルの中の引用符は \"\" と書きます）。")

TEXT: dict[str, dict[str, str]] = {
    "title": {"ja": "## JMedLLM Desk — ローカル医療LLM", "en": "## JMedLLM Desk — local medical LLM"},
    "ui_language": {"ja": "表示言語 / UI language", "en": "UI language / 表示言語"},
    "logout": {"ja": "ログアウト", "en": "Log out"},
    "tab_ask": {"ja": "質問", "en": "Ask"},
    "tab_model": {"ja": "モデル", "en": "Model"},
    "tab_benchmark": {"ja": "ベンチマーク", "en": "Benchmark"},
    "question_placeholder": {
        "ja": "例：55歳の男性。胸痛を主訴に来院した。まず行うべき検査はどれか。",
        "en": "e.g. A 55-year-old man presents with chest pain. Which test should be done first?",
    },
    "choices": {"ja": "選択肢（任意、1行に1つ）", "en": "Choices (optional, one per line)"},
    "answer_language": {"ja": "回答言語", "en": "Answer language"},
    "template": {"ja": "プロンプトテンプレート（選択式）", "en": "Prompt template (multiple choice)"},
    "shots": {"ja": "例示数（few-shot）", "en": "Examples (few-shot)"},
    "max_tokens": {"ja": "最大トークン数", "en": "Max new tokens"},
    "history": {"ja": "会話の履歴をこの端末のSQLiteに保存する",
                "en": "Keep conversation history in the local SQLite database"},
    "stop": {"ja": "停止", "en": "Stop"},
    "chosen": {"ja": "選ばれた選択肢", "en": "Chosen option"},
    "answered_by": {"ja": "回答したモデル", "en": "Answered by"},
    "model_path": {"ja": "GGUFファイルのパス", "en": "GGUF file path"},
    "model_pick": {"ja": "モデルフォルダ内のファイル", "en": "File in the models folder"},
    "gpu_layers": {"ja": "GPUレイヤー数（auto または数値）", "en": "GPU layers (auto or a number)"},
    "context": {"ja": "コンテキスト長（トークン）", "en": "Context size (tokens)"},
    "load": {"ja": "読み込む", "en": "Load"},
    "current_model": {"ja": "現在のモデル", "en": "Current model"},
    "refresh_models": {"ja": "一覧を更新", "en": "Refresh list"},
    "model_loads": {"ja": "モデル読み込みの記録（最新20件）", "en": "Model loads (last 20)"},
    "busy": {
        "ja": "⏳ モデルは別の質問に回答中です。終了を待つか、停止を押してください。",
        "en": "⏳ The model is answering another question. Wait for it to finish or press Stop.",
    },
    "abstained": {"ja": "どの選択肢にも一致しません（棄権）", "en": "Matches none of the options (abstained)"},
    "stopped": {"ja": "（停止しました）", "en": "(stopped)"},
    "cut_off": {"ja": "（長さの上限で打ち切り：最大トークン数を増やしてください）",
                "en": "(cut off at the token limit: raise Max new tokens)"},
    "bench_intro": {
        "en": "### Self-benchmark\nIgakuQA (the Japanese national medical licensing exam, 2018-2022) or an imported "
              "question set (MedQA, MedMCQA, MMLU / JMMLU, newer exams, a hospital's own questions), scored like the "
              "JMedLLM paper (Gestalt match) and at the bedside (pass/fail where the data has pass lines, "
              "contraindicated picks). Every run is kept in the local database; Stop keeps it resumable.",
        "ja": "### セルフベンチマーク\n医師国家試験（IgakuQA、2018〜2022年）または取り込んだ問題セット"
              "（MedQA、MedMCQA、MMLU / JMMLU、新しい国試、病院独自の問題）を、JMedLLM 論文と同じ方法"
              "（Gestalt 一致）と臨床の観点（合格基準のあるデータでは合否、禁忌肢の選択）で採点します。"
              "結果はすべてローカルのデータベースに保存され、中止しても再開できます。",
    },
    "bench_set": {"en": "Question set", "ja": "問題セット"},
    "bench_languages": {"en": "Languages", "ja": "言語"},
    "bench_mode": {"en": "Mode", "ja": "方式"},
    "bench_limit": {"en": "Limit (questions, 0 = all)", "ja": "問題数の上限（0 = すべて）"},
    "bench_run": {"en": "Run self-benchmark", "ja": "セルフベンチマークを実行"},
    "bench_stop": {"en": "Stop", "ja": "中止"},
    "bench_results": {"en": "Results", "ja": "結果"},
    "bench_pass_fail": {"en": "NMLE pass/fail per year", "ja": "年度別の国試合否"},
    "bench_by_year": {"en": "Accuracy by year vs baselines", "ja": "年度別正答率（ベースライン比較）"},
    "bench_by_category": {"en": "Accuracy by category vs baselines", "ja": "分野別正答率（ベースライン比較）"},
    "bench_history": {"en": "History of runs", "ja": "実行履歴"},
    "bench_runs": {"en": "Runs", "ja": "実行一覧"},
    "bench_run_id": {"en": "Run to export", "ja": "エクスポートする実行"},
    "bench_export": {"en": "Export CSV", "ja": "CSV をエクスポート"},
    "bench_refresh": {"en": "Refresh", "ja": "更新"},
    "bench_progress": {"en": "accuracy {acc} · {timing}", "ja": "正答率 {acc} · {timing}"},
    "bench_unit": {"en": "answers", "ja": "件回答"},
    "bench_timing_first": {"en": "{elapsed} elapsed · waiting for the first answer",
                           "ja": "経過 {elapsed} · 最初の回答を待っています"},
    "bench_timing_rate": {"en": "{elapsed} elapsed · {rate} answers/min", "ja": "経過 {elapsed} · 毎分 {rate} 問"},
    "bench_timing_left": {"en": "{elapsed} elapsed · about {left} left", "ja": "経過 {elapsed} · 残り約 {left}"},
    "bench_live": {"en": "⏳ **Run {run}: {status}**, started on another page of this server (it can be stopped only "
                         "there) · {done}/{total} answers · accuracy {acc} · {timing}",
                   "ja": "⏳ **実行 {run}: {status}**（このサーバーの別のページで開始。中止はそのページからだけ） · "
                         "{done}/{total} 件回答 · 正答率 {acc} · {timing}"},
    "bench_done": {"en": "**Run {run}: {status}** · {done}/{total} answers{resumed} · Gestalt (paper) accuracy {acc}",
                   "ja": "**実行 {run}: {status}** · {done}/{total} 件回答{resumed} · Gestalt（論文方式）正答率 {acc}"},
    "bench_status_running": {"en": "running", "ja": "実行中"},
    "bench_status_complete": {"en": "complete", "ja": "完了"},
    "bench_status_interrupted": {"en": "interrupted", "ja": "中断"},
    "bench_status_failed": {"en": "failed", "ja": "失敗"},
    "bench_no_data_run": {"en": "⚠️ This question set has no data here yet; import it as described above. ({error})",
                          "ja": "⚠️ この問題セットのデータがまだありません。上の手順で取り込んでください。（{error}）"},
    "bench_failed": {"en": "⚠️ The benchmark could not run: {error}",
                     "ja": "⚠️ ベンチマークを実行できませんでした：{error}"},
    "bench_resumed": {"en": " (resumed with {n} already answered)", "ja": "（回答済みの {n} 件から再開）"},
    "bench_resume_hint": {"en": " · press the button again with the same settings to resume",
                          "ja": " · 同じ設定でもう一度押すと再開します"},
    "bench_paper": {"en": "Reported in the JMedLLM paper (its own question set)",
                    "ja": "JMedLLM 論文の報告値（論文の問題セット）"},
    "bench_data": {"en": "Benchmark", "ja": "ベンチマーク"},
    "bench_import_title": {"en": "Import a question set", "ja": "問題セットを取り込む"},
    "bench_import_help": {
        "en": "The IgakuQA zip from GitHub, or a question set as a .zip, .jsonl or .csv file (the format is in the "
              "README). It is checked, fingerprinted and copied into this machine's data folder; nothing leaves it.",
        "ja": "GitHub の IgakuQA の zip、または問題セット（.zip、.jsonl、.csv。形式は README を参照）。"
              "検証してフィンガープリントを記録し、この端末のデータフォルダにコピーします。外部には送信されません。",
    },
    "bench_import_file": {"en": "File to import (.zip, .jsonl, .csv)", "ja": "取り込むファイル（.zip、.jsonl、.csv）"},
    "bench_import_name": {"en": "Name (optional: lowercase letters, digits, . _ -)",
                          "ja": "名前（任意：英小文字・数字・. _ -）"},
    "bench_import_replace": {"en": "Replace an imported set of the same name",
                             "ja": "同じ名前の問題セットを置き換える"},
    "bench_import": {"en": "Import", "ja": "取り込む"},
    "bench_import_choose": {"en": "⚠️ Choose a file to import first.", "ja": "⚠️ 先に取り込むファイルを選んでください。"},
    "bench_imported": {"en": "✅ Imported: {sets}. Choose it above and run.",
                       "ja": "✅ 取り込みました：{sets}。上で選んで実行できます。"},
    "bench_imported_set": {"en": "{label} ({name}, {n} questions)", "ja": "{label}（{name}、{n} 問）"},
    "bench_import_taken": {"en": "A set called {names} is already imported: tick \"Replace an imported set of the "
                                 "same name\", or enter another name.",
                           "ja": "{names} という名前の問題セットはすでに取り込まれています。「同じ名前の問題セットを"
                                 "置き換える」にチェックを入れるか、別の名前を入力してください。"},
    "bench_import_failed": {"en": "⚠️ Not imported (nothing was written):  \n{error}",
                            "ja": "⚠️ 取り込めませんでした（何も書き込んでいません）：  \n{error}"},
    "bench_import_admin_only": {
        "en": "🔒 Only an administrator may import question sets here. Ask one, or run "
              "`jmedllm bench data add PATH` at the server's console.",
        "ja": "🔒 問題セットの取り込みは管理者だけが行えます。管理者に依頼するか、サーバーの端末で "
              "`jmedllm bench data add PATH` を実行してください。",
    },
    "bench_table_title": {"en": "Paper-style table", "ja": "論文形式の表"},
    "bench_table_runs": {"en": "Runs (columns)", "ja": "実行（列）"},
    "bench_table_reference": {"en": "Show the paper's reported figures (reported, not measured here)",
                              "ja": "論文の報告値を表示（報告値であり、ここでの測定値ではありません）"},
    "bench_table_show": {"en": "Show table", "ja": "表を表示"},
    "bench_table_csv": {"en": "Download CSV", "ja": "CSV をダウンロード"},
    "bench_table_markdown": {"en": "Download Markdown", "ja": "Markdown をダウンロード"},
    "bench_table": {"en": "Gestalt accuracy (paper's metric) and the letter metric, per benchmark and language",
                    "ja": "ベンチマーク・言語ごとの Gestalt 正答率（論文の指標）と記号一致"},
    "bench_table_none": {"en": "⚠️ Choose at least one run.", "ja": "⚠️ 実行を1つ以上選んでください。"},
    "bench_table_failed": {"en": "⚠️ The table could not be made: {error}", "ja": "⚠️ 表を作れませんでした：{error}"},
    "chat": {"ja": "会話", "en": "Conversation"},
    "message": {"ja": "メッセージ（Enterで送信、Shift+Enterで改行）",
                "en": "Message (Enter sends, Shift+Enter for a new line)"},
    "send": {"ja": "送信", "en": "Send"},
    "regenerate": {"ja": "再生成", "en": "Regenerate"},
    "new_conversation": {"ja": "新しい会話", "en": "New conversation"},
    "choices_panel": {"ja": "選択肢 / Choices", "en": "Choices / 選択肢"},
    "thinking": {"ja": "思考（推論モデル）", "en": "Thinking (reasoning models)"},
    "settings": {"ja": "設定", "en": "Settings"},
    "context_full": {
        "ja": "⚠️ この質問を送ると、会話がモデルのコンテキスト（{n_ctx} トークン）に収まりません。"
              "新しい会話を始めるか、最初の {n} 回分のやり取りをモデルから外して送信してください。",
        "en": "⚠️ With this question the conversation no longer fits the model's context window ({n_ctx} tokens). "
              "Start a new conversation, or leave out the {n} oldest turn(s) and send.",
    },
    "drop_and_send": {"ja": "古い {n} 回分を外して送信", "en": "Drop the {n} oldest turn(s) and send"},
    "dropped_note": {
        "ja": "ℹ️ モデルには最初の {n} 回分のやり取りがもう見えていません。",
        "en": "ℹ️ The model no longer sees the {n} earlier turn(s) above.",
    },
    "too_long_alone": {
        "ja": "この質問だけでモデルのコンテキスト（{n_ctx} トークン）に収まりません"
              "（回答分 {max_tokens} トークンを含む）。質問を短くするか、最大トークン数を減らすか、"
              "より大きなコンテキストでモデルを読み込んでください。",
        "en": "This question alone does not fit the model's context window ({n_ctx} tokens, with {max_tokens} left "
              "for the answer). Shorten it, lower the max new tokens, or load the model with a larger context.",
    },
    "answer_failed": {"ja": "⚠️ 回答を続けられませんでした：{error}", "en": "⚠️ The answer could not go on: {error}"},
    "history_panel": {"ja": "会話の履歴", "en": "Conversation history"},
    "history_pick": {"ja": "保存された会話（日時 · 最初の質問 · モデル）",
                     "en": "Saved conversations (date · first question · model)"},
    "history_open": {"ja": "開いて続ける", "en": "Open"},
    "history_delete": {"ja": "削除", "en": "Delete"},
    "history_delete_all": {"ja": "すべて削除", "en": "Delete all"},
    "history_export": {"ja": "Markdown でエクスポート", "en": "Export Markdown"},
    "history_refresh": {"ja": "一覧を更新", "en": "Refresh list"},
    "history_none": {"ja": "会話を選んでください", "en": "Choose a conversation"},
    "history_confirm_one": {"ja": "この会話を削除しますか？元に戻せません：{title}",
                            "en": "Delete this conversation? This cannot be undone: {title}"},
    "history_confirm_all": {"ja": "保存された会話 {count} 件をすべて削除しますか？元に戻せません。",
                            "en": "Delete all {count} saved conversations? This cannot be undone."},
    "history_confirm_delete": {"ja": "削除する", "en": "Yes, delete"},
    "history_confirm_delete_all": {"ja": "すべて削除する", "en": "Yes, delete all"},
    "history_cancel": {"ja": "キャンセル", "en": "Cancel"},
}

LANGUAGE_CHOICES = {
    "ja": [("自動判定", "auto"), ("日本語", "ja"), ("英語", "en")],
    "en": [("Detect", "auto"), ("Japanese", "ja"), ("English", "en")],
}


THINKING_CHOICES = {
    "ja": [("テンプレートの既定", "default"), ("オン", "on"), ("オフ", "off")],
    "en": [("Template default", "default"), ("On", "on"), ("Off", "off")],
}


def t(key: str, lang: str) -> str:
    """The text for ``key`` in ``lang`` ("ja" or "en")."""
    return TEXT[key][lang]
