"""Follow-ups evaluate only what the KV cache does not hold: the local engine's per-conversation states.

The demo-model tests load an engine of their own (they change its KV cache) and compare every
answer given with reuse to the same prompt evaluated from scratch, greedy: the same text, and the
same logits after the last token, bit for bit (answers of 32 tokens; in the slow tests, answers of
96 and prompts past llama.cpp's 512-token batches).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import numpy as np
import pytest

from app.engines.base import ChatOptions, Generation, Sampling
from app.engines.conversation_cache import ConversationCache, KvState, clean_end, reusable
from app.engines.local import LocalEngine
from tests.scripted_engine import ScriptedEngine

SAMPLING = Sampling.greedy(max_tokens=32)
SYSTEM = {"role": "system", "content": "あなたは臨床医を支援するアシスタントです。簡潔に答えてください。"}
QUESTIONS_A = ["65歳男性、胸痛が30分続いています。まず何を確認しますか？",
               "心電図でST上昇がありました。次にすることは？",
               "アスピリンの用量は？"]
QUESTIONS_B = ["小児の発熱で受診しました。問診で何を聞きますか？",
               "けいれんの既往があります。注意点は？"]
Messages = list[dict[str, str]]


def _state(size: int) -> KvState:
    return KvState(tokens=np.zeros(0, dtype=np.intc), clean=0, data=b"k" * size)


def test_reuse_stops_where_evaluating_the_rest_gives_each_token_its_from_scratch_batch() -> None:
    assert reusable(shared=1000, clean=1000, n_tokens=1200, n_batch=512) == 1000
    assert reusable(shared=1000, clean=302, n_tokens=1200, n_batch=512) == 300  # whole groups of 4
    assert reusable(shared=1200, clean=1200, n_tokens=1200, n_batch=512) == 1192  # at least 8 evaluated
    assert reusable(shared=5, clean=5, n_tokens=9, n_batch=512) == 0
    # from scratch, 1,027 tokens end in a batch of 3: so must the rest, evaluated from 512
    assert reusable(shared=1020, clean=1020, n_tokens=1027, n_batch=512) == 512
    # from 584, 1,100 tokens would end in a batch of 4: from 576 it is 12
    assert reusable(shared=584, clean=584, n_tokens=1100, n_batch=512) == 576
    assert clean_end(n_tokens=333, start=164, n_batch=512) == 332  # the last batch's last 169 % 4 tokens
    assert clean_end(n_tokens=1100, start=576, n_batch=512) == 1100
    assert clean_end(n_tokens=1027, start=0, n_batch=512) == 1024  # its small last batch


def test_the_cache_evicts_least_recently_used_states_beyond_its_budget() -> None:
    cache = ConversationCache(max_bytes=300)
    cache.put("a", _state(100))
    cache.put("b", _state(100))
    cache.put("c", _state(100))
    assert cache.get("a") is not None  # "a" is now the most recently used
    cache.put("d", _state(100))
    assert "b" not in cache and all(key in cache for key in "acd")
    cache.put("a", _state(250))  # replacing a state counts its new size only
    assert "a" in cache and len(cache) == 1 and cache.total_bytes == 250
    cache.put("huge", _state(301))  # larger than the whole budget: not kept, nothing evicted for it
    assert "huge" not in cache and "a" in cache
    cache.discard("a")
    assert len(cache) == 0 and cache.total_bytes == 0


def test_stream_chat_passes_the_conversation_key_to_the_engine() -> None:
    engine = ScriptedEngine(lambda prompt: "ok")
    engine.stream_chat([{"role": "user", "content": "q"}], options=ChatOptions(conversation="c1")).result()
    engine.stream("raw").result()
    assert engine.conversations == ["c1", None]


@pytest.fixture(scope="module")
def engine(demo_model_path: Path) -> Iterator[LocalEngine]:
    yield LocalEngine.load(demo_model_path, n_gpu_layers=0, n_ctx=2048)


def _same_as_from_scratch(engine: LocalEngine, messages: Messages, sampling: Sampling, conversation: str) -> Generation:
    """Answer in the conversation, then from scratch: the same text, and the same logits bit for bit
    after the last token evaluated (so no token of the prompt or answer was computed otherwise)."""
    generation = engine.stream_chat(messages, sampling, options=ChatOptions(conversation=conversation))
    generation.result()
    reused = _last_logits(engine)
    assert generation.text == engine.stream_chat(messages, sampling).result()
    assert np.array_equal(reused, _last_logits(engine))
    return generation


def _last_logits(engine: LocalEngine) -> np.ndarray:
    with engine.slot(blocking=True):
        llm = engine.llama
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(llm.n_vocab(),)).copy()


def _turn(engine: LocalEngine, history: Messages, question: str, conversation: str) -> Generation:
    """Ask ``question`` in the conversation (checked against from scratch); add question and answer to ``history``."""
    history.append({"role": "user", "content": question})
    generation = _same_as_from_scratch(engine, history, SAMPLING, conversation)
    history.append({"role": "assistant", "content": generation.text})
    return generation


def test_a_follow_up_reuses_the_previous_prompt_and_answers_as_from_scratch(engine: LocalEngine) -> None:
    history: Messages = [SYSTEM]
    previous: Generation | None = None
    for question in QUESTIONS_A:
        generation = _turn(engine, history, question, "follow-up")
        assert generation.text.strip()
        if previous is None:
            assert generation.stats.cached_tokens == 0
        else:  # the previous prompt, less its last prompt_tokens % 4; the previous answer is evaluated again
            before = previous.stats.prompt_tokens
            assert generation.stats.cached_tokens == before - before % 4
        previous = generation


def test_interleaved_conversations_get_their_own_state_back(engine: LocalEngine) -> None:
    a: Messages = [SYSTEM]
    b: Messages = [SYSTEM]
    turns = [(a, QUESTIONS_A[0], "A"), (b, QUESTIONS_B[0], "B"), (a, QUESTIONS_A[1], "A"),
             (b, QUESTIONS_B[1], "B"), (a, QUESTIONS_A[2], "A")]
    reused = [_turn(engine, history, question, key).stats.cached_tokens for history, question, key in turns]
    # each follow-up came after the other conversation (and a prompt from scratch): its state came back
    assert [count > 0 for count in reused] == [False, False, True, True, True]


def test_a_forgotten_conversation_keeps_nothing_and_is_evaluated_again(engine: LocalEngine) -> None:
    history: Messages = [SYSTEM]
    _turn(engine, history, QUESTIONS_A[0], "deleted")
    assert "deleted" in engine.conversation_cache
    engine.forget("deleted")  # what deleting it from the history does
    assert "deleted" not in engine.conversation_cache and not engine.busy
    assert _turn(engine, history, QUESTIONS_A[1], "deleted").stats.cached_tokens == 0


def test_a_raw_prompt_is_evaluated_from_scratch_also_after_a_conversation(engine: LocalEngine) -> None:
    prompt = "<|im_start|>user\n高血圧の第一選択薬を挙げてください。<|im_end|>\n<|im_start|>assistant\n"
    first = engine.complete(prompt, SAMPLING)
    _turn(engine, [SYSTEM], QUESTIONS_A[0], "raw-then")
    again = engine.complete(prompt, SAMPLING)
    twice = engine.complete(prompt, SAMPLING)
    assert first.text.strip() and first.text == again.text == twice.text
    assert first.stats.cached_tokens == again.stats.cached_tokens == twice.stats.cached_tokens == 0


def test_evicted_states_are_evaluated_again_with_the_same_answers(demo_model_path: Path) -> None:
    budget = 3 << 19  # 1.5 MiB: at 12 KiB a token one of these states (70-110 tokens) fits, not two
    small = LocalEngine.load(demo_model_path, n_gpu_layers=0, n_ctx=2048, kv_cache_bytes=budget)
    cache = small.conversation_cache
    a: Messages = [SYSTEM]
    b: Messages = [SYSTEM]
    _turn(small, a, QUESTIONS_A[0], "A")
    assert "A" in cache
    _turn(small, b, QUESTIONS_B[0], "B")
    assert "A" not in cache and "B" in cache and cache.total_bytes <= budget
    assert _turn(small, a, QUESTIONS_A[1], "A").stats.cached_tokens == 0  # evicted: evaluated again
    assert "A" in cache and "B" not in cache and cache.total_bytes <= budget


def _cancelled_answer(engine: LocalEngine, messages: Messages, conversation: str) -> str:
    cancel = threading.Event()
    generation = engine.stream_chat(messages, Sampling.greedy(max_tokens=64), cancel,
                                    options=ChatOptions(conversation=conversation))
    for count, _ in enumerate(generation, start=1):
        if count == 4:
            cancel.set()
    assert generation.stats.finish_reason == "cancelled"
    return generation.text


@pytest.mark.parametrize("keeps_half_answer", [True, False])
def test_a_follow_up_after_a_cancelled_answer_is_still_correct(engine: LocalEngine, keeps_half_answer: bool) -> None:
    key = f"cancelled-{keeps_half_answer}"
    history: Messages = [SYSTEM]
    _turn(engine, history, QUESTIONS_A[0], key)
    history.append({"role": "user", "content": QUESTIONS_A[1]})
    asked_before = len(engine.tokenize(engine.render_chat(history)[0]))
    half = _cancelled_answer(engine, history, key)
    assert half
    if keeps_half_answer:  # the conversation shows the half answer, then the next question
        history.append({"role": "assistant", "content": half})
        history.append({"role": "user", "content": QUESTIONS_A[2]})
    # else the conversation drops the half answer and asks the same question again
    cached = _same_as_from_scratch(engine, history, SAMPLING, key).stats.cached_tokens
    if keeps_half_answer:  # the half answer is evaluated again, like any answer
        assert cached == asked_before - asked_before % 4
    else:  # the same prompt again: all but its last 8 to 11 tokens
        assert asked_before - 12 < cached <= asked_before - 8


LONG_QUESTIONS = [
    "68歳男性。3日前からの発熱と咳嗽、膿性痰で来院しました。体温38.6度、SpO2は92%です。既往に2型糖尿病があります。"
    "まず何を評価し、どの検査を出すべきですか。",
    "胸部X線で右下葉に浸潤影がありました。A-DROPでは何点で、外来治療と入院のどちらが適切ですか。理由も説明してください。",
    "入院として、初期の抗菌薬はどう選びますか。腎機能に応じた用量調整の考え方も教えてください。",
    "治療開始から48時間後、解熱傾向がなく酸素需要が増えています。鑑別と次の検査を挙げてください。",
]
# 142 tokens of findings, repeated to make prompts longer than llama.cpp's 512-token batches
FINDINGS = ("検査所見: 白血球15,800/μL、CRP 18.2 mg/dL、BUN 25 mg/dL、クレアチニン1.1 mg/dL、血糖245 mg/dL、"
            "プロカルシトニン2.4 ng/mL。喀痰グラム染色でグラム陽性双球菌を多数認め、好中球による貪食像あり。"
            "尿中肺炎球菌抗原陽性、レジオネラ抗原陰性。胸部X線で右下葉に浸潤影と少量の胸水を認める。")


@pytest.mark.slow
def test_long_answers_and_prompts_beyond_one_batch_match_from_scratch(engine: LocalEngine) -> None:
    """Follow-ups whose previous answers ran 96 tokens (reusing them would change these answers)."""
    history: Messages = [SYSTEM]
    for question in LONG_QUESTIONS:
        history.append({"role": "user", "content": question})
        generation = _same_as_from_scratch(engine, history, Sampling.greedy(max_tokens=96), "long")
        history.append({"role": "assistant", "content": generation.text})
    assert generation.stats.prompt_tokens > 512 and generation.stats.cached_tokens > 0


def _padded(engine: LocalEngine, history: Messages, text: str, wanted: int, n_batch: int = 512) -> Messages:
    """``history`` and the question ``text`` (padded) whose prompt is ``wanted`` past a multiple of ``n_batch``."""
    for extra in range(400):  # two of them make one more token
        messages = [*history, {"role": "user", "content": text + "。" * extra}]
        if len(engine.tokenize(engine.render_chat(messages)[0])) % n_batch == wanted:
            return messages
    pytest.fail("no padding gives the prompt length the test needs")


@pytest.mark.slow
def test_follow_ups_ending_in_a_small_batch_match_from_scratch(engine: LocalEngine) -> None:
    """The two cases where reuse must start earlier so that the last batch is evaluated as from scratch."""
    sampling = Sampling.greedy(max_tokens=16)
    # from scratch the prompt ends in a batch of 3 tokens: the rest is evaluated from a multiple of 512
    first: Messages = [SYSTEM, {"role": "user", "content": FINDINGS * 4 + LONG_QUESTIONS[0]}]
    answer = engine.stream_chat(first, sampling, options=ChatOptions(conversation="small-1")).result()
    follow_up = _padded(engine, [*first, {"role": "assistant", "content": answer}], FINDINGS * 2, wanted=3)
    assert _same_as_from_scratch(engine, follow_up, sampling, "small-1").stats.cached_tokens == 512
    # from where the cache ends, the rest would end in a batch of 4: it starts 8 tokens earlier
    first = [SYSTEM, {"role": "user", "content": LONG_QUESTIONS[0]}]
    before = engine.stream_chat(first, sampling, options=ChatOptions(conversation="small-2"))
    answer = before.result()
    clean = before.stats.prompt_tokens - before.stats.prompt_tokens % 4
    follow_up = _padded(engine, [*first, {"role": "assistant", "content": answer}], FINDINGS * 3,
                        wanted=(clean + 4) % 512)
    assert _same_as_from_scratch(engine, follow_up, sampling, "small-2").stats.cached_tokens == clean - 8
