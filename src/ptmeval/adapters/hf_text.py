"""`hf-text`: any `AutoModelForSequenceClassification` architecture, encoder or decoder."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ptmeval.adapters import check_options
from ptmeval.adapters._base import LoadedModel, ModelAdapter, last_linear
from ptmeval.errors import ModelSourceError

log = logging.getLogger(__name__)


def is_decoder(config: Any) -> bool:
    """True for causal (decoder-only) language models.

    From the config's architectures; a config without them (one read from a GGUF file) is a
    decoder when its model type has a causal-LM class and no masked-LM class (Llama: yes; BERT,
    which has both, no).
    """
    if getattr(config, "is_encoder_decoder", False):
        return False
    if getattr(config, "is_decoder", False):
        return True
    archs = getattr(config, "architectures", None) or []
    if archs:
        return any(a.endswith("ForCausalLM") for a in archs)
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    kind = getattr(config, "model_type", "")
    return (
        kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES
    )


def convert_gguf(directory: Path, gguf_file: str, out_dir: Path) -> None:
    """Dequantise a GGUF checkpoint into a plain safetensors snapshot (fp32) with its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (directory / gguf_file).exists():
        raise ModelSourceError(f"GGUF file '{gguf_file}' not found in '{directory}'")
    log.info("converting %s to safetensors", directory / gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=gguf_file, dtype=torch.float32
    )
    # A GGUF-loaded model refuses save_pretrained: rebuild it from its config.
    fresh = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer.model", "vocab.json", "spiece.model")


def refuse_remote_code(folder: Path, trusted: bool) -> None:
    """A model folder that ships its own code (config.json 'auto_map', or .py files) is refused
    unless its config entry sets trust_remote_code: true."""
    import json

    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise ModelSourceError(f"'{folder / 'config.json'}': unreadable ({err})") from None
    code = sorted(p.name for p in folder.glob("*.py"))
    if (config.get("auto_map") or code) and not trusted:
        what = ", ".join(code) if code else "auto_map in config.json"
        raise ModelSourceError(
            f"'{folder}' ships custom code ({what}); it is not run unless the model's config "
            "entry sets trust_remote_code: true"
        )


POOLING_LABELS = {"mean": "mean over real tokens", "last": "last real token"}


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """One vector per sequence from the hidden states (batch × tokens × dim) of its real tokens
    (`mask` 1), padded on either side: 'mean' averages them, 'last' takes the last one.

    Padding positions never enter: they are selected away, not multiplied by 0 (a padding
    position's state can be NaN when its attention row is fully masked).
    """
    real = mask.bool()
    if how == "last":
        positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
        last = torch.where(real, positions, -1).amax(1).clamp(min=0)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    if how != "mean":
        raise ValueError(f"unknown pooling '{how}' (one of {', '.join(POOLING_LABELS)})")
    summed = torch.where(real.unsqueeze(-1), hidden, torch.zeros((), dtype=hidden.dtype)).sum(1)
    return summed / real.sum(1, keepdim=True).clamp(min=1).to(hidden.dtype)


def _objective(config: Any) -> str:
    """The pretraining objective as the checkpoint declares it (its `architectures`)."""
    archs = getattr(config, "architectures", None) or []
    for arch in archs:
        for suffix, objective in (
            ("ForCausalLM", "causal language modelling"),
            ("ForMaskedLM", "masked language modelling"),
            ("ForPreTraining", "masked LM + next-sentence prediction"),
            ("ForSequenceClassification", "sequence classification (fine-tuned)"),
        ):
            if arch.endswith(suffix):
                return objective
    return "not declared" if not archs else f"not declared ({', '.join(archs)})"


LM_OBJECTIVES = ("causal language modelling", "masked language modelling", "masked LM + next")


def source_head(
    snapshot: Path, config: Any, unexpected: Iterable[str], embeddings: tuple[int, ...]
) -> tuple[str, int]:
    """What the checkpoint has on top of the backbone, which the task head replaces (an LM
    head, pretraining heads), and its parameter count: the checkpoint's float tensors that the
    sequence-classification model leaves unused. An LM head tied to the input embeddings has no
    matrix of its own: it is named, and counted once, in the backbone."""
    from safetensors import safe_open

    unused = set(unexpected)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    count = 0
    for file in sorted(snapshot.glob("*.safetensors")):
        with safe_open(file, framework="pt") as f:
            for key in unused & set(f.keys()):
                part = f.get_slice(key)
                shape = tuple(part.get_shape())
                if not part.get_dtype().startswith(("F", "BF")) or (tied and shape == embeddings):
                    continue  # buffers (position ids), a saved copy of the tied matrix
                count += math.prod(shape)
    lm = is_decoder(config) or _objective(config).startswith(LM_OBJECTIVES)
    if lm:
        what = "LM head" + (" (tied to the input embeddings: in the backbone)" if tied else "")
        return (what + (" + other pretraining heads" if tied and count else ""), count)
    return ("pretraining heads" if count else "none in the checkpoint", count)


def _tokenizer_and_config(
    snapshot: Path, num_labels: int, trust_remote_code: bool
) -> tuple[Any, Any]:
    """The snapshot's tokenizer (checked to have a real vocabulary, given a padding token) and
    its config for `num_labels` classes with that padding token."""
    from transformers import AutoConfig, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(snapshot, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise ModelSourceError(f"'{snapshot}': no usable tokenizer ({err})") from None
    config = AutoConfig.from_pretrained(
        snapshot, num_labels=num_labels, trust_remote_code=trust_remote_code
    )
    vocab = getattr(config, "vocab_size", None)
    if vocab and len(tokenizer) < min(1000, vocab // 2):
        # transformers builds an empty tokenizer (special tokens only) when the files are
        # missing: every word would become [UNK]
        raise ModelSourceError(
            f"'{snapshot}': no usable tokenizer (it has {len(tokenizer)} tokens for a "
            f"vocabulary of {vocab}; tokenizer files missing?)"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, config


def _classifier(
    snapshot: Path, config: Any, init: str, trust_remote_code: bool
) -> tuple[Any, tuple[str, int]]:
    """The sequence-classification model (pretrained weights, or a random init) in fp32, and
    what the checkpoint has on top of the backbone (`source_head`)."""
    from transformers import AutoModelForSequenceClassification

    if init == "pretrained":
        model, loading = AutoModelForSequenceClassification.from_pretrained(
            snapshot,
            config=config,
            trust_remote_code=trust_remote_code,
            dtype=torch.float32,
            output_loading_info=True,
        )
        embeddings = tuple(model.get_input_embeddings().weight.shape)
        return model, source_head(snapshot, config, loading["unexpected_keys"], embeddings)
    model = AutoModelForSequenceClassification.from_config(
        config, trust_remote_code=trust_remote_code, dtype=torch.float32
    )
    return model, ("none (random init)", 0)


def _collate_fn(tokenizer: Any, max_length: int) -> Any:
    """The batch builder: token ids and attention mask, each distinct text tokenised once."""
    token_cache: dict[str, list[int]] = {}
    pad_id = int(tokenizer.pad_token_id)

    def collate(texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenise each distinct text once (every epoch and the per-epoch validation reuse
        it: long documents cost far more to tokenise than to truncate), then pad the batch
        on the right to its longest member (dynamic padding)."""
        missing = list(dict.fromkeys(t for t in texts if t not in token_cache))
        if missing:
            enc = tokenizer(missing, truncation=True, max_length=max_length)
            token_cache.update(zip(missing, enc["input_ids"], strict=True))
        rows = [token_cache[t] for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    return collate


def _model_info(
    model: Any,
    config: Any,
    tokenizer: Any,
    decoder: bool,
    pooling: str,
    source: tuple[str, int],
    max_length: int,
    trust_remote_code: bool,
) -> dict[str, Any]:
    """The loaded model's description (family, architecture, sizes, tokenizer, heads)."""
    return {
        "family": "decoder" if decoder else "encoder",
        "architecture": type(model).__name__,
        "model_type": config.model_type,
        "layers": getattr(config, "num_hidden_layers", None),
        "hidden_size": getattr(config, "hidden_size", None),
        "vocab_size": getattr(config, "vocab_size", None),
        "feature_pooling": POOLING_LABELS[pooling],
        "heads": getattr(config, "num_attention_heads", None),
        "intermediate_size": getattr(config, "intermediate_size", None),
        "max_input_length": getattr(config, "max_position_embeddings", None),
        "tokenizer": type(tokenizer).__name__,
        "declared_architectures": ",".join(getattr(config, "architectures", None) or []),
        "pretraining_objective": _objective(config),
        "source_head": source[0],
        "params_source_head": source[1],
        "pad_token_id": tokenizer.pad_token_id,
        "sequence_length": max_length,
        "standard_api": "transformers AutoModelForSequenceClassification"
        + (" (trust_remote_code)" if trust_remote_code else ""),
    }


class Adapter(ModelAdapter):
    name = "hf-text"
    modality = "text"

    def __init__(self, options: dict[str, Any]) -> None:
        super().__init__(options)
        check_options(self.name, self.options)

    @property
    def pooling(self) -> str:
        return str(self.options.get("pooling", "mean"))

    def prepare_snapshot(self, resolved: Path | None, source: Any, out_dir: Path) -> None:
        gguf = getattr(source, "gguf_file", None)
        if gguf and resolved is not None:
            convert_gguf(resolved if resolved.is_dir() else resolved.parent, gguf, out_dir)
            return
        super().prepare_snapshot(resolved, source, out_dir)
        if not (out_dir / "config.json").exists():
            raise ModelSourceError(
                f"'{resolved}' has no config.json: not a Hugging Face model folder"
            )
        refuse_remote_code(out_dir, self.trust_remote_code)
        if not any((out_dir / name).exists() for name in TOKENIZER_FILES):
            raise ModelSourceError(
                f"'{resolved}': no tokenizer files (one of {', '.join(TOKENIZER_FILES)})"
            )

    def load(
        self,
        snapshot: Path,
        num_labels: int,
        init: str,
        settings: Any,
        trust_remote_code: bool = False,
    ) -> LoadedModel:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        tokenizer, config = _tokenizer_and_config(snapshot, num_labels, trust_remote_code)
        decoder = is_decoder(config)
        model, source = _classifier(snapshot, config, init, trust_remote_code)
        _, head = last_linear(model)
        max_length = int(settings.max_length)
        pooling = self.pooling
        collate = _collate_fn(tokenizer, max_length)

        def example_batch(batch_size: int) -> dict[str, torch.Tensor]:
            ids = torch.randint(0, len(tokenizer), (batch_size, max_length))
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

        def features(m: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            mask = batch["attention_mask"]
            if decoder and bool((mask[:, 0] == 0).any()):
                # left padding: number the real tokens from 0, as they are numbered alone
                batch = {**batch, "position_ids": (mask.cumsum(1) - 1).clamp(min=0)}
            return pool(m.base_model(**batch).last_hidden_state, mask, pooling)

        def logits(m: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return m(**batch).logits

        info = _model_info(
            model, config, tokenizer, decoder, pooling, source, max_length, trust_remote_code
        )
        return LoadedModel(model, head, collate, logits, features, example_batch, info)
