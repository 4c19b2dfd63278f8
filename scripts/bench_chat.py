#!/usr/bin/env python
"""Time to first token of a conversation's 6th turn: the KV cache reused against evaluated from scratch.

A fixed 6-turn Japanese clinical conversation (about 1,500 tokens: the app's system prompt, five
questions with fixed answers, the sixth question) on one local engine. Each run times the sixth
turn three ways, in turn, greedy, so their answers must be identical:

* scratch: the prompt evaluated whole (``stream_chat`` without a conversation key);
* reuse: the KV cache holds the conversation's fifth prompt, as after the model answered it, and
  only the rest is evaluated (``ChatOptions(conversation=...)``): the fifth answer and the sixth
  question (an answer's tokens, generated one at a time, are always evaluated again: see
  app/engines/conversation_cache.py);
* restored: the same, but another conversation used the model in between, so the first one's KV
  state comes back from the engine's conversation cache first.

Time to first token is measured from the call to the first text piece. Prints medians, the
ratios to scratch (target <= 0.3), and what saving and restoring the sixth turn's KV state costs
(the engine's ``KvState`` against ``Llama.save_state``/``load_state``).

    .venv/bin/python scripts/bench_chat.py --model demo --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import llama_cpp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.engines.base import ChatOptions, Generation, Sampling
from app.engines.conversation_cache import KvState
from app.engines.local import LocalEngine
from app.models import resolve_model
from app.prompts import system_prompt

TURNS = [
    ("68歳男性。3日前からの発熱と咳嗽、膿性痰で来院しました。体温38.6度、呼吸数24回、SpO2は室内気で92%です。"
     "既往に2型糖尿病と高血圧があります。まず何を評価すべきですか。",
     "まず重症度の評価が必要です。バイタルサインでは頻呼吸と低酸素血症があり、市中肺炎を強く疑います。"
     "身体診察では呼吸音の左右差、副雑音（crackles）、意識状態、脱水の有無を確認します。"
     "検査としては胸部X線、血算、CRP、BUN、クレアチニン、電解質、血糖、動脈血ガス分析を行い、"
     "喀痰のグラム染色と培養、血液培養2セット、尿中肺炎球菌抗原とレジオネラ抗原を提出します。"
     "重症度はA-DROPやCURB-65で評価し、年齢、脱水、呼吸状態、意識障害、血圧低下の項目を確認します。"
     "糖尿病があるため、血糖コントロールの状態と感染に伴う高血糖にも注意が必要です。"),
    ("胸部X線で右下葉に浸潤影がありました。BUNは25 mg/dL、血圧は128/76 mmHg、意識は清明です。"
     "A-DROPでは何点で、外来治療と入院のどちらが適切ですか。",
     "A-DROPでは、年齢（男性70歳以上）は該当せず、BUN 21 mg/dL以上で脱水ありとして1点、"
     "SpO2 90%以下ではないため呼吸は0点、意識障害なし、収縮期血圧90 mmHg以下でもないので、合計1点です。"
     "1点は中等症に相当し、外来治療も選択肢になりますが、この患者さんではSpO2 92%と低めで、"
     "糖尿病の合併もあり、経口摂取や自宅での観察体制によっては入院を検討すべきです。"
     "酸素投与が必要な状態であれば入院が妥当です。家族の支援や通院の可否も判断材料になります。"),
    ("入院として、初期の抗菌薬はどう選びますか。アレルギー歴はありません。",
     "入院治療となる中等症の市中肺炎では、肺炎球菌、インフルエンザ菌、モラクセラ、"
     "非定型病原体（マイコプラズマ、クラミドフィラ、レジオネラ）をカバーすることを考えます。"
     "一般的にはβラクタム系としてセフトリアキソン1〜2 g 1日1回、またはアンピシリン・スルバクタム3 g 6時間毎の点滴に、"
     "非定型病原体のカバーとしてアジスロマイシンなどのマクロライド系を併用します。"
     "腎機能に応じた用量調整が必要で、投与前に培養検体を採取しておくことが重要です。"
     "グラム染色の結果があれば、それに基づいて標的を絞ることもできます。"),
    ("治療開始から48時間後、解熱傾向がなく、酸素需要が増えています。次に何を考えますか。",
     "治療反応不良として、いくつかの可能性を系統的に考えます。第一に、病原体が想定外である可能性です。"
     "耐性菌、レジオネラ、結核、真菌、ウイルス性肺炎などを考え、培養結果と抗原検査を再確認します。"
     "第二に、合併症の出現です。肺炎随伴性胸水や膿胸、肺膿瘍を評価するため、胸部X線の再検や胸部CT、"
     "胸水があれば胸腔穿刺を検討します。第三に、非感染性疾患の可能性として、心不全、肺塞栓症、"
     "器質化肺炎、薬剤性肺障害などを鑑別します。抗菌薬の用量、投与経路、腎機能に応じた調整が適切かも確認します。"
     "また、誤嚥の関与、閉塞性病変（肺癌など）による閉塞性肺炎、カテーテル関連感染など肺以外の感染巣も見落とさないようにします。"
     "酸素需要が増えている場合は、集中治療室への移動や非侵襲的換気の適応も含めて、早めに上級医と相談してください。"),
    ("胸部CTで右胸水が中等量あり、胸腔穿刺でpH 7.1、糖40 mg/dL、LDH 1200 IU/Lでした。どう解釈しますか。",
     "胸水はpH 7.2未満、糖60 mg/dL未満、LDH高値であり、複雑性肺炎随伴性胸水と考えられます。"
     "膿性であれば膿胸です。この所見はドレナージの適応を示しており、胸腔ドレーンの留置が推奨されます。"
     "胸水のグラム染色と培養を提出し、嫌気性菌のカバーも考慮して抗菌薬を見直します。"
     "例えばアンピシリン・スルバクタムやセフトリアキソンにメトロニダゾールを加える選択肢があります。"
     "ドレナージ後も排液不良で隔壁形成がある場合は、線溶療法や胸腔鏡下手術を検討するため、"
     "呼吸器外科にも早めに相談します。ドレーン留置後は排液量と性状、胸部X線での再膨張、"
     "炎症反応と体温の推移を毎日評価し、血糖管理も並行して行います。"),
]
QUESTION_6 = "胸腔ドレーン留置後、抗菌薬はどのくらいの期間続けるべきですか。経口薬への切り替えの目安も教えてください。"
OTHER_CONVERSATION = [{"role": "user", "content": "小児の熱性けいれんで、救急外来で最初に確認することは何ですか。"}]


def messages_until(turn: int) -> list[dict[str, str]]:
    """The conversation up to question ``turn`` (1-6), the earlier answers included."""
    messages = [{"role": "system", "content": system_prompt("ja")}]
    for question, answer in TURNS[: turn - 1]:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    messages.append({"role": "user", "content": TURNS[turn - 1][0] if turn <= len(TURNS) else QUESTION_6})
    return messages


def timed(start: float, generation: Generation) -> tuple[str, float, int]:
    """(text, seconds from ``start`` to the first piece, reused prompt tokens), run to the end."""
    first = None
    for _ in generation:
        if first is None:
            first = time.perf_counter() - start
    return generation.text, first if first is not None else time.perf_counter() - start, generation.stats.cached_tokens


def hold_conversation(engine: LocalEngine, key: str) -> None:
    """Leave the KV cache holding the conversation as after question 5 (its answer is never reused)."""
    engine.stream_chat(messages_until(5), Sampling.greedy(max_tokens=1), options=ChatOptions(conversation=key)).result()


def turn_6(engine: LocalEngine, sampling: Sampling, key: str | None) -> tuple[str, float, int]:
    start = time.perf_counter()
    return timed(start, engine.stream_chat(messages_until(6), sampling, options=ChatOptions(conversation=key)))


def state_costs(engine: LocalEngine, repeats: int = 3) -> None:
    """Seconds and bytes to save and restore the KV state holding the 6th turn's prompt."""
    prompt, _ = engine.render_chat(messages_until(6))
    tokens = engine.tokenize(prompt)
    with engine.slot(blocking=True):
        llm = engine.llama
        llm.reset()
        llm.eval(tokens)
        saves, loads = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            state = KvState.capture(llm, len(tokens))
            saves.append(time.perf_counter() - start)
            start = time.perf_counter()
            state.restore(llm)
            loads.append(time.perf_counter() - start)
        per_token = state.nbytes / len(tokens) / 1024
        print(f"KV state of {len(tokens)} tokens: {state.nbytes / 2**20:.1f} MiB ({per_token:.1f} KiB a token); "
              f"save {statistics.median(saves) * 1000:.1f} ms, restore "
              f"{statistics.median(loads) * 1000:.1f} ms (medians of {repeats})")
        start = time.perf_counter()
        full = llm.save_state()
        save_s = time.perf_counter() - start
        start = time.perf_counter()
        llm.load_state(full)
        load_s = time.perf_counter() - start
        size = full.llama_state_size + full.scores.nbytes + full.input_ids.nbytes
        print(f"for comparison Llama.save_state(): {size / 2**20:.1f} MiB ({full.scores.nbytes / 2**20:.1f} MiB of "
              f"them Llama.scores); save {save_s * 1000:.0f} ms, load_state {load_s * 1000:.0f} ms")
        llm.reset()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo", help='GGUF path or "demo"')
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=16, help="answer tokens of each timed turn")
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--gpu-layers", default="0")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    path = resolve_model(args.model)
    layers = args.gpu_layers if args.gpu_layers == "auto" else int(args.gpu_layers)
    engine = LocalEngine.load(path, n_gpu_layers=layers, n_ctx=args.ctx, n_threads=args.threads)
    sampling = Sampling.greedy(max_tokens=args.tokens)
    prompt_tokens = len(engine.tokenize(engine.render_chat(messages_until(6))[0]))
    print(f"model {path.name} ({engine.card.quantization}), {engine.device}, ctx {args.ctx}; turn 6 prompt "
          f"{prompt_tokens} tokens, {args.tokens} answer tokens, {args.runs} runs, alternating; "
          f"llama-cpp-python {llama_cpp.__version__}")
    turn_6(engine, Sampling.greedy(max_tokens=2), None)  # warm up

    times: dict[str, list[float]] = {"scratch": [], "reuse": [], "restored": []}
    reused: dict[str, int] = {}
    texts: set[str] = set()
    for run in range(args.runs):
        order = ["scratch", "reuse", "restored"] if run % 2 == 0 else ["restored", "reuse", "scratch"]
        for case in order:
            key = None if case == "scratch" else f"bench-{case}-{run}"
            if key is not None:
                hold_conversation(engine, key)
            if case == "restored":
                engine.stream_chat(OTHER_CONVERSATION, Sampling.greedy(max_tokens=8),
                                   options=ChatOptions(conversation=f"other-{run}")).result()
            text, first, cached = turn_6(engine, sampling, key)
            times[case].append(first)
            reused[case] = cached
            texts.add(text)

    med = statistics.median
    scratch = med(times["scratch"])
    print(f"{'turn 6':<10}{'TTFT ms (median)':>18}{'min':>9}{'max':>9}{'reused tokens':>15}{'ratio':>8}")
    for case, values in times.items():
        print(f"{case:<10}{med(values) * 1000:>18.1f}{min(values) * 1000:>9.1f}{max(values) * 1000:>9.1f}"
              f"{reused[case]:>15}{med(values) / scratch:>8.3f}")
    print(f"answers identical across the three: {'yes' if len(texts) == 1 else f'NO ({len(texts)} texts)'}")
    print(f"TTFT ratio reuse/scratch: {med(times['reuse']) / scratch:.3f}, restored/scratch: "
          f"{med(times['restored']) / scratch:.3f}   (target <= 0.3)")
    state_costs(engine)


if __name__ == "__main__":
    main()
