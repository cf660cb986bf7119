"""The decoder-only Transformer every architecture shares, and the interface interpretability uses.

An architecture subclasses `Transformer` and says only what makes it different: how tokens become
vectors (`embed`), how the final hidden state becomes logits (`unembed`), and its vocab matrix.

The common interface, identical on all five models:
- `vocab_matrix()`: the (V, C) matrix that embeds tokens and scores them at the output.
- `hidden_states(idx)`: the residual stream after the embedding and after each layer.
- hook points named like TransformerLens (`hook_embed`, `blocks.{L}.hook_resid_pre`,
  `blocks.{L}.hook_resid_mid`, `blocks.{L}.hook_resid_post`, `blocks.{L}.hook_attn_out`,
  `blocks.{L}.hook_mlp_out`, `hook_final`), read with `run_with_cache` and edited with `hooks`.
- `generate(...)` with a key/value cache.
"""

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.layers import Block, HookPoint, KVCache, ModelConfig, Rotary, init_weights

HookFn = Callable[[torch.Tensor], torch.Tensor | None]


class Transformer(nn.Module):
    uses_rope: bool = True  # False for GPT-2's learned absolute positions
    has_recipes: bool = False  # True for the reflow family

    def __init__(self, config: ModelConfig, norm: Callable, mlp: Callable):
        super().__init__()
        self.config = config
        rotary = None
        if self.uses_rope:
            rotary = Rotary(config.n_embd // config.n_head, config.block_size, config.rope_theta)
        self.rotary = rotary
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, norm, mlp, rotary) for _ in range(config.n_layer))
        self.ln_f = norm(config)
        self.hook_embed = HookPoint()
        self.hook_final = HookPoint()

    # --- what each architecture defines -------------------------------------------------------
    def vocab_parts(self):
        """Whatever embed and unembed share, computed once per forward (e.g. top-k recipes)."""
        raise NotImplementedError

    def embed(self, idx: torch.Tensor, start_pos: int, parts) -> torch.Tensor:
        raise NotImplementedError

    def unembed(self, h: torch.Tensor, parts) -> torch.Tensor:
        raise NotImplementedError

    def vocab_matrix(self) -> torch.Tensor:
        """The (V, C) matrix: row v embeds token v, and logits are h @ vocab_matrix().T."""
        raise NotImplementedError

    # --- the forward pass ---------------------------------------------------------------------
    def _init_weights(self) -> None:
        init_weights(self, self.config.n_layer)

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        start_pos: int = 0,
        caches: list[KVCache] | None = None,
        last_only: bool = False,
        vocab_parts=None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (B, T, V) for idx (B, T), and the mean cross-entropy if targets are given.

        Targets equal to -1 are ignored (padding, or prompt tokens under a loss mask).
        `last_only` scores only the final position, which is all generation needs.
        `vocab_parts` passes in what vocab_parts() returns, when the weights have not changed.
        """
        B, T = idx.size()
        assert start_pos + T <= self.config.block_size, "sequence longer than block_size"
        parts = self.vocab_parts() if vocab_parts is None else vocab_parts
        x = self.drop(self.hook_embed(self.embed(idx, start_pos, parts)))  # (B, T, C)
        for layer, block in enumerate(self.blocks):
            x = block(x, start_pos, caches[layer] if caches is not None else None)
        h = self.hook_final(self.ln_f(x))  # (B, T, C)
        if last_only:
            h = h[:, -1:, :]
        logits = self.unembed(h, parts)  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)).float(), targets.view(-1), ignore_index=-1
            )
        return logits, loss

    # --- reading and editing activations -----------------------------------------------------
    def hook_points(self) -> dict[str, HookPoint]:
        return {name: m for name, m in self.named_modules() if isinstance(m, HookPoint)}

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: dict[str, HookFn]) -> Iterator[None]:
        """Within the block, fwd_hooks[name](activation) runs at that hook point; a tensor it
        returns replaces the activation, None leaves it unchanged."""
        points = self.hook_points()
        unknown = sorted(set(fwd_hooks) - set(points))
        if unknown:
            raise KeyError(f"unknown hook point(s) {unknown}; valid ones look like {self.resid_hook(0)}")
        handles = [
            points[name].register_forward_hook(lambda _m, _inp, out, fn=fn: fn(out))
            for name, fn in fwd_hooks.items()
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def run_with_cache(self, idx: torch.Tensor, names: list[str] | None = None):
        """Run forward and return (logits, {hook name: activation}) for every hook point, or `names`."""
        cache: dict[str, torch.Tensor] = {}

        def save(name):
            def fn(x):
                cache[name] = x.detach()

            return fn

        names = list(self.hook_points()) if names is None else names
        with self.hooks({name: save(name) for name in names}):
            logits, _ = self(idx)
        return logits, cache

    @staticmethod
    def resid_hook(layer: int) -> str:
        """Name of the point that holds the residual stream after `layer` (0-based)."""
        return f"blocks.{layer}.hook_resid_post"

    def hidden_states(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """[embedding output, after layer 0, ..., after layer L-1], each (B, T, C)."""
        names = ["hook_embed"] + [self.resid_hook(i) for i in range(self.config.n_layer)]
        _, cache = self.run_with_cache(idx, names)
        return [cache[name] for name in names]

    # --- bookkeeping --------------------------------------------------------------------------
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token as nanoGPT counts them: 6N for the matmuls (forward and
        backward), plus 12 * L * C * T for attention scores and values."""
        n = self.num_params() - self.position_params()
        cfg = self.config
        return 6 * n + 12 * cfg.n_layer * cfg.n_embd * seq_len

    def position_params(self) -> int:
        """Parameters that are a lookup table of positions (no FLOPs); 0 for RoPE models."""
        return 0

    # --- generation ---------------------------------------------------------------------------
    def new_caches(self, batch: int) -> list[KVCache]:
        cfg = self.config
        p = next(self.parameters())
        head_size = cfg.n_embd // cfg.n_head
        return [
            KVCache(batch, cfg.n_kv_head, cfg.block_size, head_size, p.device, p.dtype)
            for _ in range(cfg.n_layer)
        ]

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        stop_token: int | None = None,
    ) -> torch.Tensor:
        """Extend idx (B, T) by max_new_tokens tokens. temperature 0 means greedy. With
        `stop_token`, stop early once every row has produced it (rows may run on past theirs).

        With the cache each step costs one token's forward. Once the context fills block_size,
        the window slides and every step recomputes the last block_size tokens from scratch,
        since cached keys were computed at positions that no longer hold.
        """
        block = self.config.block_size
        caches = None
        # Once per call, not per token: reflow-topk's top-k over every recipe row costs more than
        # a decoding step.
        parts = self.vocab_parts()
        stopped = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        for _ in range(max_new_tokens):
            window = idx[:, -block:]
            if not use_cache or idx.size(1) > block:
                logits, _ = self(window, last_only=True, vocab_parts=parts)
            elif caches is None:  # prefill: the whole prompt at once
                caches = self.new_caches(idx.size(0))
                logits, _ = self(window, caches=caches, last_only=True, vocab_parts=parts)
            else:  # decode: only the newest token
                start = caches[0].length
                logits, _ = self(idx[:, start:], start_pos=start, caches=caches, last_only=True,
                                 vocab_parts=parts)
            next_token = sample_next(logits[:, -1, :], temperature, top_k, generator)
            idx = torch.cat((idx, next_token), dim=1)
            if stop_token is not None:
                stopped |= next_token[:, 0] == stop_token
                if stopped.all():
                    break
        return idx


def sample_next(logits, temperature: float, top_k: int | None, generator=None) -> torch.Tensor:
    """One token id per row of logits (B, V): greedy at temperature 0, else top-k sampling."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    if top_k is not None and top_k < logits.size(-1):
        # Draw among the k best only: the same distribution as setting the others to -inf, but the
        # temperature, softmax and draw cover k entries, not the vocabulary (CPU, V=50k: 1.2 -> 0.2
        # ms). Dividing by a positive temperature keeps the order, so topk can come first.
        values, indices = torch.topk(logits, top_k)  # (B, k)
        probs = F.softmax(values.float() / temperature, dim=-1)
        return indices.gather(-1, torch.multinomial(probs, num_samples=1, generator=generator))
    probs = F.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)
