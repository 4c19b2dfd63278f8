"""Importing a GGUF into the models folder: checked first, then copied and hashed in one pass, atomically.

Before a byte is copied the file must be a GGUF whose header and metadata parse within the bounds
of :mod:`app.gguf_metadata` (its tensor data inside the file), whose architecture the pinned
llama.cpp knows (:data:`LLAMA_CPP_ARCHITECTURES`), whose name in the models folder is free (unless
replacing) and whose size fits the free disk space with :data:`DISK_MARGIN` to spare. The copy
goes to a temporary file beside the target, fsynced, then renamed: an interruption or a full disk
leaves nothing behind. A file already in the folder under another name (the same bytes) is refused: a
model takes gigabytes. The model is 0600 (only its owner can read it), like the app's other private
files. The sha256 computed while copying goes into the hash cache, so the model card does not read
the file again.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass
from pathlib import Path

from app.atomic import atomic_writer
from app.demo_model import DEMO_ALIAS
from app.disk import free_bytes, size_text
from app.errors import UserError
from app.gguf_metadata import GGUF_MAGIC, GGUFFormatError, printable, read_gguf_metadata
from app.hashing import HashProgress, cached_sha256, remember_sha256
from app.models import MODEL_SUFFIX, list_models
from app.paths import FolderError, models_dir

DISK_MARGIN = 512 * 2**20  # left free after the copy: the database, logs and the OS need room too
MAX_NAME_CHARS = 200
_CHUNK = 8 * 2**20
_SHOWN_CHARS = 80  # of a name or architecture quoted from an untrusted file

# The general.architecture values llama.cpp can load, as of the llama.cpp that llama-cpp-python
# 0.3.36 vendors (commit 0c1e57098bba43ac29e6e3b677cdceebdd22334f): the names of LLM_ARCH_NAMES in
# its src/llama-arch.cpp, less "clip" (only llama-quantize uses it) and "(unknown)". When the pin
# moves, tests/test_model_import.py fails until this list is taken again from the new sdist.
LLAMA_CPP_PYTHON_VERSION = "0.3.36"
LLAMA_CPP_ARCHITECTURES = frozenset("""
    afmoe apertus arcee arctic arwkv7 baichuan bailingmoe bailingmoe2 bailingmoe3 bert bitnet bloom
    chameleon chatglm codeshell cogvlm cohere2 cohere2moe command-r dbrx deci deepseek deepseek2
    deepseek2-ocr deepseek32 deepseek4 dflash dots1 dots3note dream eagle3 ernie4_5 ernie4_5-moe
    eurobert exaone exaone-moe exaone4 falcon falcon-h1 gemma gemma-embedding gemma2 gemma3 gemma3n
    gemma4 gemma4-assistant glm-dsa glm4 glm4moe glm5-next gpt-oss gpt2 gptj gptneox granite granite_swa
    granitehybrid granitemoe graniteswitch grok grovemoe hrm_text hunyuan-dense hunyuan-moe hunyuan_vl
    hy_v3 hy_v4 internlm2 jais jais2 jamba jina-bert-v2 jina-bert-v3 kimi-k3 kimi-linear laguna lfm2
    lfm2moe llada llada-moe llama llama-embed llama4 maincoder mamba mamba2 maple mellum mimo2 minicpm
    minicpm3 minimax-01 minimax-m2 minimax-m3 mistral3 mistral4 modern-bert mpt muse-glimmer nanbeige
    nemotron nemotron_h nemotron_h_moe neo-bert nomic-bert nomic-bert-moe olmo olmo2 olmoe openelm orion
    paddleocr pangu-embedded phi2 phi3 phimoe plamo plamo2 plamo3 plm pockettts qwen qwen2 qwen2moe
    qwen2vl qwen3 qwen35 qwen35moe qwen3moe qwen3next qwen3tts qwen3vl qwen3vlmoe qwen4exp refact rnd1
    rwkv6 rwkv6qwen2 rwkv7 seed_oss smallthinker smollm3 spark2_5 stablelm starcoder starcoder2 step35
    t5 t5encoder talkie wavtokenizer-dec xverse
""".split())


class ModelImportError(UserError, ValueError):
    """The file cannot be imported as asked; nothing was written to the models folder."""


@dataclass(frozen=True)
class ImportedModel:
    """A GGUF now in the models folder."""

    path: Path
    sha256: str
    architecture: str
    replaced: bool  # an earlier file of the same name was replaced


def _shown(text: str) -> str:
    text = printable(text)
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


def model_file_name(name: str) -> str:
    """``name`` as a file name of the models folder (``.gguf`` added when missing), or a clear refusal."""
    file_name = name if name.endswith(MODEL_SUFFIX) else name + MODEL_SUFFIX
    plain = (Path(file_name).name == file_name and "\\" not in file_name and not file_name.startswith(".")
             and printable(file_name) == file_name and "\0" not in file_name)
    if not plain or file_name == MODEL_SUFFIX or len(file_name) > MAX_NAME_CHARS:
        raise ModelImportError(f"{_shown(name)!r} cannot name a model: use a plain file name of at most "
                               f"{MAX_NAME_CHARS} characters, without folders, control characters or a leading dot.")
    if file_name == DEMO_ALIAS + MODEL_SUFFIX:
        raise ModelImportError(f"{_shown(name)!r} names the embedded demo model ({DEMO_ALIAS!r}); "
                               "choose another name with --name.")
    return file_name


def _not_gguf_reason(head: bytes) -> str:
    """What a file that does not start with the GGUF magic looks like, for the refusal."""
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 2**27:
        return ("it is a safetensors file (Hugging Face weights). Convert the checkpoint folder first: "
                "jmedllm convert build --base FOLDER --out OUT")
    if head.startswith(b"PK\x03\x04"):
        return ("it is a zip archive (a PyTorch .bin/.pt checkpoint is one). Convert the checkpoint first, "
                "from its safetensors weights: jmedllm convert build --base FOLDER --out OUT")
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return ("it is a Python pickle (an old PyTorch .bin checkpoint); pickles can run code when loaded "
                "and are never opened here. Use the model's safetensors weights with jmedllm convert build")
    return "it does not start with the GGUF magic bytes"


def check_importable(source: Path) -> str:
    """The architecture of the GGUF at ``source`` once it passes every check; a clear refusal otherwise."""
    if not source.is_file():
        raise ModelImportError(f"{source} is not a file." if source.exists() else f"File not found: {source}")
    try:
        with source.open("rb") as handle:
            head = handle.read(16)
        if not head.startswith(GGUF_MAGIC):
            raise ModelImportError(f"{source.name} is not a GGUF model: {_not_gguf_reason(head)}.")
        metadata = read_gguf_metadata(source)
    except GGUFFormatError as exc:
        raise ModelImportError(f"{source.name} is not a complete, well-formed GGUF file: {exc}.") from exc
    except OSError as exc:
        raise ModelImportError(f"Cannot read {source}: {exc.strerror or exc}") from exc
    architecture = metadata.values.get("general.architecture")
    if not isinstance(architecture, str) or not architecture:
        raise ModelImportError(f"{source.name} does not declare its architecture (general.architecture).")
    if architecture not in LLAMA_CPP_ARCHITECTURES:
        raise ModelImportError(f"{source.name} is a {_shown(architecture)!r} model, an architecture the llama.cpp "
                               f"of this app (llama-cpp-python {LLAMA_CPP_PYTHON_VERSION}) cannot run.")
    if not metadata.tensors:
        raise ModelImportError(f"{source.name} holds no tensors (a vocabulary-only GGUF?), so it cannot answer.")
    return architecture


def check_free_space(folder: Path, size: int) -> None:
    """Refuse unless ``folder``'s disk has room for ``size`` bytes and :data:`DISK_MARGIN` more."""
    free = free_bytes(folder)
    if size + DISK_MARGIN > free:
        raise ModelImportError(f"Not enough free disk space in {folder}: the model needs {size_text(size)} and "
                               f"{size_text(DISK_MARGIN)} should stay free, but only {size_text(free)} is left.")


def same_model(source: Path, size: int, target: Path, on_progress: HashProgress | None = None) -> Path | None:
    """A model of the models folder (as the picker lists them) other than ``target`` with exactly the bytes of
    ``source``: only files of the same size are candidates, so ``source`` is read (hashed) first only when
    there is one."""
    candidates = [p for p in list_models() if p.name != target.name and p.stat().st_size == size]
    if not candidates:
        return None
    digest = cached_sha256(source, on_progress)
    return next((p for p in candidates if cached_sha256(p) == digest), None)  # list_models is sorted


def _copy(source: Path, target: Path, size: int, on_progress: HashProgress | None) -> str:
    """Copy ``source`` to ``target`` atomically and owner-only (0600), returning the sha256 of the bytes copied."""
    digest = hashlib.sha256()
    done = 0
    try:
        with source.open("rb") as src, atomic_writer(target, private=True) as out:
            while chunk := src.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                done += len(chunk)
                if on_progress is not None:
                    on_progress(done, size)
            if done != size:
                raise ModelImportError(f"{source.name} changed size while it was copied ({size_text(size)}, then "
                                       f"{size_text(done)}); wait until it is completely written and try again.")
    except OSError as exc:
        raise ModelImportError(f"Copying {source.name} into {target.parent} failed: {exc.strerror or exc}. "
                               "Nothing was written.") from exc
    return digest.hexdigest()


def import_model(source: Path, name: str | None = None, replace: bool = False,
                 on_progress: HashProgress | None = None) -> ImportedModel:
    """Copy the GGUF ``source`` into the models folder as ``name`` (default: its own file name).

    Refused with nothing written: not a complete GGUF, an architecture llama.cpp does not know, a
    name already taken (unless ``replace``), the same model already there under another name, or too
    little free disk space.
    """
    source = Path(source).expanduser()
    file_name = model_file_name(name if name is not None else source.name)
    architecture = check_importable(source)
    try:
        target = models_dir() / file_name
    except FolderError as exc:  # a file in its place, a read-only disk
        raise ModelImportError(f"{exc} Nothing was written.") from exc
    existed = target.exists() or target.is_symlink()
    if existed and not replace:
        raise ModelImportError(f"A model named {target.name} is already in {target.parent}. "
                               "Choose another name with --name, or add --replace to replace it.")
    if target.is_dir():
        raise ModelImportError(f"{target} is a folder, not a model file; choose another name with --name.")
    size = source.stat().st_size
    twin = same_model(source, size, target, on_progress)
    if twin is not None:
        raise ModelImportError(f"{source.name} is already in the models folder as {twin.name} (the same bytes, "
                               f"sha256 checked): use it by that name, e.g. jmedllm serve --model "
                               f"{shlex.quote(twin.name)}. "
                               "Nothing was copied.")
    check_free_space(target.parent, size)
    sha256 = _copy(source, target, size, on_progress)
    remember_sha256(target, sha256)
    return ImportedModel(target, sha256, architecture, existed)
