"""bench.py --gpu_report on CPU: the rows that can run here run (shrunken model, few steps), and
the GPU-only rows say why they were skipped."""

import pytest
import torch

import bench
from benchmarking import gpu_report
from core.memory_plan import GIB


def test_gpu_report_runs_on_cpu_and_skips_gpu_rows_with_a_reason(capsys):
    bench.main(["--gpu_report", "--device=cpu"])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("GPU report on CPU") and "| check | setting | result | verdict |" in lines
    rows = [line.split(" | ") for line in lines if line.startswith("| ") and "---" not in line][1:]
    by_check = {}
    for row in rows:
        by_check.setdefault(row[0].removeprefix("| "), []).append(row)
    assert len(by_check["training"]) == 6  # reflow and gpt2-new: fp32 here, bf16 and fp16 skipped
    ran = [row for row in by_check["training"] if row[2] != "skipped"]
    assert [row[1].split(",")[0] for row in ran] == ["reflow", "gpt2-new"]
    assert all("tok/s, MFU" in row[2] and row[3].startswith("loss falls") for row in ran)
    skipped = [row for row in rows if row[2] == "skipped"]
    assert len(skipped) == 6 and all(row[3] == "needs a CUDA GPU |" for row in skipped)
    assert by_check["T4 rehearsal"][0][2] == "skipped"
    assert by_check["attention kernel"][0][2] == "flash_attention_for_cpu"
    assert "cached" in by_check["sampling"][0][2] and "uncached" in by_check["sampling"][0][2]
    resume = by_check["exact resume"][0]
    assert "losses identical" in resume[2] and resume[3].startswith("within the tolerance")
    memory = by_check["peak memory"][0]
    assert memory[2].startswith("measured") and "planned" in memory[2]
    assert not [row for row in rows if row[0] != "| peak memory" and "✗" in row[3]]  # the checks passed


# --- the T4 rehearsal's judgement and the table, on measurements made up for the purpose ---------
def rehearsal(**changes) -> gpu_report.Rehearsal:
    """A capped run that went well: 4.80 GiB at its peak against a plan of 5.00 GiB (+4%)."""
    values = dict(steps=300, cap_bytes=gpu_report.T4_BYTES, planned_bytes=5 * GIB, plan_fits=True,
                  peak_allocated=int(4.8 * GIB), skipped_steps=0, first_loss=10.9, last_loss=6.2,
                  tokens_per_s=61_000.0)
    return gpu_report.Rehearsal(**{**values, **changes})


def test_rehearsal_row_passes_a_run_that_went_as_planned():
    row = gpu_report.rehearsal_row(rehearsal())
    assert row["ok"] and row["check"] == "T4 rehearsal" and "300 steps" in row["setting"]
    assert row["result"] == "max_memory_allocated 4.80 GiB, planned 5.00 GiB; 61,000 tok/s"
    assert row["verdict"].startswith("plan +4% off the measurement; planner: fits; 0 skipped steps")


@pytest.mark.parametrize("changes, says", [
    (dict(peak_allocated=int(3.5 * GIB)), "plan +43% off"),  # the planner overestimates by more than 15%
    (dict(peak_allocated=int(6.5 * GIB)), "plan -23% off"),  # ... or underestimates
    (dict(skipped_steps=2), "2 skipped steps"),  # fp16 overflowed after GradScaler settled
    (dict(last_loss=11.0), "DID NOT FALL"),
    (dict(peak_allocated=None), "planner: fits (WRONG)"),  # out of memory where the plan said it fits
])
def test_rehearsal_row_fails_what_went_wrong(changes, says):
    row = gpu_report.rehearsal_row(rehearsal(**changes))
    assert not row["ok"] and says in row["verdict"]


def test_plan_verdict_agrees_with_an_out_of_memory_the_plan_foresaw():
    ok, result, verdict = gpu_report.plan_verdict(20 * GIB, None, plan_fits=False)
    assert ok and result == "out of memory; planned 20.00 GiB" and verdict == "planner: does not fit (agrees)"
    ok, _, verdict = gpu_report.plan_verdict(GIB, GIB, plan_fits=None)  # CPU: nothing to fit
    assert ok and verdict == "plan +0% off the measurement"


def test_report_is_one_markdown_table_with_a_mark_on_failures():
    rows = [gpu_report.rehearsal_row(rehearsal()), gpu_report.rehearsal_row(rehearsal(skipped_steps=1)),
            gpu_report.skipped("training", "reflow, bfloat16, compile", "no bf16 on this GPU")]
    text = gpu_report.format_report(rows, "Tesla T4", date="2026-12-06")
    lines = text.splitlines()
    assert lines[0] == f"GPU report on Tesla T4, torch {torch.__version__}, 2026-12-06" and lines[1] == ""
    table = lines[2:]
    assert table[:2] == ["| check | setting | result | verdict |", "| --- | --- | --- | --- |"]
    assert len(table) == 5 and all(line.startswith("| ") and line.endswith(" |") for line in table)
    assert not table[2].endswith("✗ |") and table[3].endswith("✗ |")
    assert table[4] == "| training | reflow, bfloat16, compile | skipped | no bf16 on this GPU |"


def test_memory_cap_is_lifted_even_when_the_run_runs_out_of_memory(monkeypatch):
    """The cap (torch.cuda.set_per_process_memory_fraction) holds inside and is lifted after, on a
    faked 80 GB GPU (this machine has none)."""
    fractions = []
    properties = type("Properties", (), {"total_memory": 80 * 10**9})()
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device=None: properties)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction",
                        lambda fraction, device=None: fractions.append(fraction))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: fractions.append("emptied"))
    with pytest.raises(torch.OutOfMemoryError):
        with gpu_report.memory_capped("cuda:0", gpu_report.T4_BYTES):
            assert fractions == [0.2]  # 16 of 80 GB
            raise torch.OutOfMemoryError("faked")
    assert fractions == [0.2, 1.0, "emptied"]
