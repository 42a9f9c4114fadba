"""`hf-text`: any `AutoModelForSequenceClassification` architecture, encoder or decoder."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

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


class Adapter(ModelAdapter):
    name = "hf-text"
    modality = "text"

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
        from transformers import (
            AutoConfig,
            AutoModelForSequenceClassification,
            AutoTokenizer,
        )
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
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
        decoder = is_decoder(config)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        config.pad_token_id = tokenizer.pad_token_id
        if init == "pretrained":
            model = AutoModelForSequenceClassification.from_pretrained(
                snapshot, config=config, trust_remote_code=trust_remote_code, dtype=torch.float32
            )
        else:
            model = AutoModelForSequenceClassification.from_config(
                config, trust_remote_code=trust_remote_code, dtype=torch.float32
            )
        _, head = last_linear(model)
        max_length = int(settings.max_length)

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

        def example_batch(batch_size: int) -> dict[str, torch.Tensor]:
            ids = torch.randint(0, len(tokenizer), (batch_size, max_length))
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

        def features(m: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            out = m.base_model(**batch)
            hidden = out.last_hidden_state
            mask = batch["attention_mask"]
            if decoder:  # the last real token, as the sequence-classification head uses
                last = mask.sum(1) - 1
                return hidden[torch.arange(hidden.shape[0]), last]
            weights = mask.unsqueeze(-1).to(hidden.dtype)  # masked mean pooling
            return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)

        def logits(m: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return m(**batch).logits

        info = {
            "family": "decoder" if decoder else "encoder",
            "architecture": type(model).__name__,
            "model_type": config.model_type,
            "layers": getattr(config, "num_hidden_layers", None),
            "hidden_size": getattr(config, "hidden_size", None),
            "vocab_size": getattr(config, "vocab_size", None),
            "feature_pooling": "last token" if decoder else "masked mean",
            "heads": getattr(config, "num_attention_heads", None),
            "intermediate_size": getattr(config, "intermediate_size", None),
            "max_input_length": getattr(config, "max_position_embeddings", None),
            "tokenizer": type(tokenizer).__name__,
            "declared_architectures": ",".join(getattr(config, "architectures", None) or []),
            "pretraining_objective": _objective(config),
            "pad_token_id": tokenizer.pad_token_id,
            "sequence_length": max_length,
            "standard_api": "transformers AutoModelForSequenceClassification"
            + (" (trust_remote_code)" if trust_remote_code else ""),
        }
        return LoadedModel(model, head, collate, logits, features, example_batch, info)
