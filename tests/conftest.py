import os
import signal
import time
from pathlib import Path

import pytest
import torch

from models import ModelConfig, build_model

# Every process a test starts inherits this mark (tests build their env from os.environ), so a process
# left behind is found even after its parent died and it was reparented to init.
SESSION_MARK = f"REFLOW_TEST_SESSION={os.getpid()}".encode()
os.environ["REFLOW_TEST_SESSION"] = str(os.getpid())
# Services meant to live as long as the test session: wandb's starts at a test's first wandb.init, is
# reused by later ones, and ends when this process ends (it watches our pid).
SESSION_SERVICES = (b"wandb-core",)


def marked_processes() -> dict[int, int]:
    """pid -> parent pid of every live process carrying this session's mark (zombies have no environ)."""
    found = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if SESSION_MARK not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            if any(service in (entry / "cmdline").read_bytes() for service in SESSION_SERVICES):
                continue
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        found[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def started_during(before: set[int], now: dict[int, int]) -> list[int]:
    """Processes not alive before the test, whose ancestors were not either (a browser started by a
    module fixture may open renderers during a test: those belong to the fixture)."""
    def owned_by_earlier(pid):
        while pid in now:
            pid = now[pid]
            if pid in before:
                return True
        return False
    return [pid for pid in now if pid not in before and not owned_by_earlier(pid)]


@pytest.fixture(autouse=True)
def no_process_outlives_its_test():
    """A test that leaves a process behind (a stopped rank, an orphaned worker) fails, and the process
    is ended with SIGKILL, which ends stopped processes too."""
    before = set(marked_processes())
    yield
    deadline = time.monotonic() + 5  # a process told to stop may need a moment to exit
    while (left := started_during(before, marked_processes())) and time.monotonic() < deadline:
        time.sleep(0.05)
    if left:
        commands = []
        for pid in left:
            try:
                commands.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200])
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        pytest.fail(f"the test left {len(left)} process(es) running (now killed): {commands}")
# lang="auto" follows the locale: the tests read English on any machine unless they ask for Chinese.
os.environ["LC_ALL"] = "C.UTF-8"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_config(**overrides) -> ModelConfig:
    """A model small enough that a forward and backward take milliseconds on CPU."""
    args = dict(n_layer=2, n_head=4, n_embd=32, block_size=32, vocab_size=97,
                n_signals=16, topk=4, swiglu_multiple_of=16)
    args.update(overrides)
    return ModelConfig(**args)


def tiny_model(name: str, **overrides):
    if name == "reflow-lite":
        overrides.setdefault("n_kv_head", 2)
    return build_model(name, tiny_config(**overrides))


def scrambled(name: str, **overrides):
    """A tiny model with large random weights (norm gains and biases too). GPT-2's N(0, 0.02) init
    makes attention nearly uniform and logits tiny, which would hide a wrong layout under 1e-4."""
    model = tiny_model(name, **overrides).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn_like(param) * 0.3 + (1.0 if param.dim() == 1 else 0.0))
    return model


def summation_tolerance(reference: torch.Tensor, terms: int) -> dict:
    """rtol/atol for a float result that computed the same sums as `reference` in another order
    (chunking, recomputation, another CPU's SIMD width: Intel AVX-512 and AMD AVX2 differ). Reordering
    a sum of `terms` values moves it by at most about terms * eps * (its inputs' magnitude); the
    reference's largest entry stands in for that magnitude, so tiny entries near zero get the same
    absolute slack as the tensor's scale. A real error (a wrong mask, a missed chunk) is orders larger."""
    eps = torch.finfo(reference.dtype).eps
    return dict(rtol=terms * eps, atol=terms * eps * reference.abs().max().item())
