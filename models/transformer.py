"""The decoder-only Transformer every architecture shares, and the interface interpretability uses.

An architecture subclasses `Transformer` and says only what makes it different: how tokens become
vectors (`embed`), how the final hidden state becomes logits (`unembed`), the weights those two
share (`shared_vocab_weights`), its vocab matrix and its token table.

The common interface, identical on all five models:
- `vocab_matrix()`: the (V, C) matrix that embeds tokens and scores them at the output.
- `token_table()`: the parameter that stores one editable row per token (W_recipe, or the embedding).
- `hidden_states(idx)`: the residual stream after the embedding and after each layer.
- hook points named like TransformerLens', read with `run_with_cache` (or `recording`, which keeps
  gradients, for training-time penalties) and edited with `hooks`:
    hook_embed                      (B, T, C)  the embedding, positions included (see below)
    blocks.{L}.hook_resid_pre       (B, T, C)  the residual stream entering layer L
    blocks.{L}.attn.hook_q          (B, H, T, D) queries, after rotary positions
    blocks.{L}.attn.hook_k/hook_v   (B, K, T, D) the new keys and values, before the KV cache
    blocks.{L}.attn.hook_pattern    (B, H, T, keys) attention weights (written out only on request)
    blocks.{L}.hook_attn_out        (B, T, C)  the attention's output, after its projection
    blocks.{L}.hook_resid_mid       (B, T, C)  after the attention's residual add
    blocks.{L}.mlp.hook_post        (B, T, hidden) the MLP's hidden activations
    blocks.{L}.hook_mlp_out         (B, T, C)
    blocks.{L}.hook_resid_post      (B, T, C)  the residual stream leaving layer L
    hook_final                      (B, T, C)  after the final norm, what the unembedding reads
- `generate(...)` with a key/value cache.

Where our points differ from TransformerLens':
- gpt2's `hook_embed` is token + position embedding (TL: `hook_embed` + `hook_pos_embed`, summed
  before `blocks.0.hook_resid_pre`); on the RoPE models it is the token embedding alone.
- `hook_final` is TL's `ln_final.hook_normalized` (after the norm's gain), not a residual point.
- hook_q/k/v are (batch, head, position, head size), TL's are (batch, position, head, head size);
  ours come after rotary positions (TL: `hook_rot_q`/`hook_rot_k`), and GQA's k/v keep K heads.
- `hook_pattern` holds what multiplies the values: softmax weights, or sigmoid weights under
  sigmoid attention, before attention dropout. There is no `hook_attn_scores`.
- The MLP's `hook_pre` does not exist; `mlp.hook_post` is after SwiGLU's product for gated MLPs.
"""

import contextlib
import inspect
from collections.abc import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from models.chunked_loss import IGNORE_INDEX, chunked_cross_entropy
from models.layers import Block, HookPoint, KVCache, ModelConfig, Rotary, init_weights

# A hook function is fn(activation) or, as in TransformerLens, fn(activation, hook), where hook is
# the HookPoint (its `.name` says which point), so one function can serve many points. A tensor it
# returns replaces the activation; None leaves it unchanged.
HookFn = Callable[..., torch.Tensor | None]
# Which points to read: None (all), one name, a list of names, or a predicate on names.
NamesFilter = str | list[str] | Callable[[str], bool] | None


def takes_hook_argument(fn: Callable) -> bool:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # some builtins have no signature
        return False
    return any(p.name == "hook" or p.kind == p.VAR_KEYWORD for p in parameters)


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
        for name, point in self.hook_points().items():
            point.name = name

    # --- what each architecture defines -------------------------------------------------------
    def shared_vocab_weights(self):
        """The weights embed and unembed share, computed once per forward: a tensor (the tied
        embedding) or a tuple of tensors (reflow's recipes, top-k for reflow-topk, and basis).
        unembed(h, shared) depends on nothing else, which is what lets the chunked loss take its
        gradients."""
        raise NotImplementedError

    def embed(self, idx: torch.Tensor, start_pos: int, shared) -> torch.Tensor:
        raise NotImplementedError

    def unembed(self, h: torch.Tensor, shared) -> torch.Tensor:
        raise NotImplementedError

    def vocab_matrix(self) -> torch.Tensor:
        """The (V, C) matrix: row v embeds token v, and logits are h @ vocab_matrix().T."""
        raise NotImplementedError

    def token_table(self) -> nn.Parameter:
        """The parameter that stores one editable row per token: W_recipe (V, S) on the reflow
        family, the embedding (V, C) on the others."""
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
        shared_vocab_weights=None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Logits (B, T, V) for idx (B, T), and the mean cross-entropy if targets are given.

        Targets equal to -1 are ignored (padding, or prompt tokens under a loss mask).
        With config.chunked_loss and targets, the loss is taken in chunks of positions and the
        logits are never formed: None is returned in their place.
        `last_only` scores only the final position, which is all generation needs.
        `shared_vocab_weights` passes in what shared_vocab_weights() returns, when the weights
        have not changed.
        """
        shared = self.shared_vocab_weights() if shared_vocab_weights is None else shared_vocab_weights
        x = self.residual_stream(idx, start_pos=start_pos, caches=caches, shared=shared)
        h = self.hook_final(self.ln_f(x))  # (B, T, C)
        if last_only:
            h = h[:, -1:, :]
        if targets is not None and self.config.chunked_loss and not last_only:
            weights = shared if isinstance(shared, tuple) else (shared,)
            unembed = lambda chunk, *w: self.unembed(chunk, w if isinstance(shared, tuple) else w[0])  # noqa: E731
            loss = chunked_cross_entropy(h, targets, unembed, weights, self.config.loss_chunk_size)
            return None, loss
        logits = self.unembed(h, shared)  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.view(-1, logits.size(-1)).float(), targets.view(-1), ignore_index=IGNORE_INDEX
            )
        return logits, loss

    def residual_stream(self, idx: torch.Tensor, stop_at_layer: int | None = None, start_pos: int = 0,
                        caches: list[KVCache] | None = None, shared=None) -> torch.Tensor:
        """The residual stream (B, T, C) after the embedding and the first `stop_at_layer` blocks
        (all of them when None; negative counts from the end, as Python slices do)."""
        assert start_pos + idx.size(1) <= self.config.block_size, "sequence longer than block_size"
        shared = self.shared_vocab_weights() if shared is None else shared
        x = self.drop(self.hook_embed(self.embed(idx, start_pos, shared)))  # (B, T, C)
        # Activation checkpointing keeps only each block's input and recomputes the block in the
        # backward: activation memory of one block instead of all, for about one more forward.
        # Hooks inside a checkpointed block run again during that recomputation: a hook that edits
        # must stay registered until the backward has run. The attention path is pinned, so
        # recording patterns (`recording`) may end before the backward.
        checkpointing = self.config.activation_checkpointing and self.training and torch.is_grad_enabled()
        for layer, block in enumerate(self.blocks[:stop_at_layer]):
            cache = caches[layer] if caches is not None else None
            if checkpointing and cache is None:
                pinned = block.attn.hook_pattern.active
                x = checkpoint(block, x, start_pos, None, pinned, use_reentrant=False)
            else:
                x = block(x, start_pos, cache)
        return x

    # --- reading and editing activations -----------------------------------------------------
    def hook_points(self) -> dict[str, HookPoint]:
        return {name: m for name, m in self.named_modules() if isinstance(m, HookPoint)}

    def hook_names(self, names_filter: NamesFilter = None) -> list[str]:
        """The names of the points `names_filter` selects, in the order the forward reaches them
        (a list keeps its own order); an unknown name raises KeyError."""
        points = list(self.hook_points())
        if names_filter is None:
            return points
        if callable(names_filter):
            return [name for name in points if names_filter(name)]
        names = [names_filter] if isinstance(names_filter, str) else list(names_filter)
        unknown = sorted(set(names) - set(points))
        if unknown:
            raise KeyError(f"unknown hook point(s) {unknown}; valid ones look like {self.resid_hook(0)}")
        return names

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: dict[str, HookFn]) -> Iterator[None]:
        """Within the block, fwd_hooks[name](activation) or fwd_hooks[name](activation, hook=point)
        runs at that hook point; a tensor it returns replaces the activation, None leaves it."""
        points = self.hook_points()
        self.hook_names(list(fwd_hooks))  # refuses unknown names before registering any

        def call(fn, point):
            if takes_hook_argument(fn):
                return lambda _module, _inputs, out: fn(out, hook=point)
            return lambda _module, _inputs, out: fn(out)

        handles = [points[name].register_forward_hook(call(fn, points[name]))
                   for name, fn in fwd_hooks.items()]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    @contextlib.contextmanager
    def recording(self, names_filter: NamesFilter = None, detach: bool = True) -> Iterator[dict]:
        """Within the block, every forward stores the selected activations in the dict it yields
        ({name: tensor}, the latest forward's). With detach=False they keep their gradients, so a
        training-time penalty (e.g. on attention patterns or hidden states) can be added to the loss."""
        store: dict[str, torch.Tensor] = {}

        def save(x, hook):
            store[hook.name] = x.detach() if detach else x

        with self.hooks({name: save for name in self.hook_names(names_filter)}):
            yield store

    def run_with_cache(self, idx: torch.Tensor, names_filter: NamesFilter = None,
                       stop_at_layer: int | None = None):
        """Run forward and return (output, {hook name: activation}) for the points `names_filter`
        selects (all by default). The output is the logits, or with `stop_at_layer` the residual
        stream after that many blocks (as TransformerLens' stop_at_layer: the final norm and the
        (B, T, V) readout are skipped, and so are later layers)."""
        with self.recording(names_filter) as cache:
            if stop_at_layer is None:
                output, _ = self(idx)
            else:
                output = self.residual_stream(idx, stop_at_layer=stop_at_layer)
        return output, cache

    @staticmethod
    def resid_hook(layer: int) -> str:
        """Name of the point that holds the residual stream after `layer` (0-based)."""
        return f"blocks.{layer}.hook_resid_post"

    def hidden_states(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """[embedding output, after layer 0, ..., after layer L-1], each (B, T, C)."""
        names = ["hook_embed"] + [self.resid_hook(i) for i in range(self.config.n_layer)]
        _, cache = self.run_with_cache(idx, names, stop_at_layer=self.config.n_layer)
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
        valid_vocab_size: int | None = None,
    ) -> torch.Tensor:
        """Extend idx (B, T) by max_new_tokens tokens. temperature 0 means greedy. With
        `stop_token`, stop early once every row has produced it (rows may run on past theirs).
        Only ids below `valid_vocab_size` are drawn (the tokenizer's ids; None: every row of the
        vocabulary): see `sample_next`.

        With the cache each step costs one token's forward. Once the context fills block_size,
        the window slides and every step recomputes the last block_size tokens from scratch,
        since cached keys were computed at positions that no longer hold.
        """
        block = self.config.block_size
        caches = None
        # Once per call, not per token: reflow-topk's top-k over every recipe row costs more than
        # a decoding step.
        shared = self.shared_vocab_weights()
        stopped = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)
        for _ in range(max_new_tokens):
            window = idx[:, -block:]
            if not use_cache or idx.size(1) > block:
                logits, _ = self(window, last_only=True, shared_vocab_weights=shared)
            elif caches is None:  # prefill: the whole prompt at once
                caches = self.new_caches(idx.size(0))
                logits, _ = self(window, caches=caches, last_only=True, shared_vocab_weights=shared)
            else:  # decode: only the newest token
                start = caches[0].length
                logits, _ = self(idx[:, start:], start_pos=start, caches=caches, last_only=True,
                                 shared_vocab_weights=shared)
            next_token = sample_next(logits[:, -1, :], temperature, top_k, generator, valid_vocab_size)
            idx = torch.cat((idx, next_token), dim=1)
            if stop_token is not None:
                stopped |= next_token[:, 0] == stop_token
                if stopped.all():
                    break
        return idx


class NonFiniteLogits(ArithmeticError):
    """The model scored the next token with NaN or inf: its weights or activations are not finite.
    A property of the user's checkpoint, not a bug here, so entry scripts print it as one line
    (core/errors.py reads `user_facing`; models/ imports nothing from the rest of the repo)."""

    user_facing = True


def sample_next(logits, temperature: float, top_k: int | None, generator=None,
                valid_vocab_size: int | None = None) -> torch.Tensor:
    """One token id per row of logits (B, V): greedy at temperature 0, else top-k sampling.

    The one sampling rule of every path that draws tokens. Only the first `valid_vocab_size` ids
    can be drawn: the vocabulary is padded past the tokenizer's ids (50,257 -> 50,304) and those
    rows decode to nothing. Non-finite scores raise NonFiniteLogits rather than reaching the draw.
    Scores are shifted so each row's best is 0 before dividing by the temperature, so any
    temperature above 0 gives finite probabilities (one below float32's smallest normal number is
    raised to it: the distribution there is already greedy, ties aside).
    """
    if valid_vocab_size is not None:
        logits = logits[..., :valid_vocab_size]  # ids keep their positions: the padding is at the end
    if not torch.isfinite(logits).all():
        raise NonFiniteLogits("the model scored the next token with NaN or inf, so no token can be drawn: "
                              "its weights or activations are not finite; sample an earlier checkpoint, "
                              "or use --dtype=float32 if float16 overflowed")
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)
    temperature = max(temperature, torch.finfo(torch.float32).tiny)
    if top_k is not None and top_k < logits.size(-1):
        # Draw among the k best only: the same distribution as setting the others to -inf, but the
        # temperature, softmax and draw cover k entries, not the vocabulary (CPU, V=50k: 1.2 -> 0.2
        # ms). Dividing by a positive temperature keeps the order, so topk can come first.
        values, indices = torch.topk(logits, top_k)  # (B, k)
        draw = torch.multinomial(probabilities(values, temperature), num_samples=1, generator=generator)
        return indices.gather(-1, draw)
    return torch.multinomial(probabilities(logits, temperature), num_samples=1, generator=generator)


def probabilities(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(scores / temperature) per row, computed from scores minus the row's best (<= 0), so a
    tiny temperature sends the others to -inf and the best to exactly 0, never to inf - inf."""
    scores = scores.float()
    return F.softmax((scores - scores.max(dim=-1, keepdim=True).values) / temperature, dim=-1)
