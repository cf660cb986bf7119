"""bench.py --gpu_report on CPU: the rows that can run here run (shrunken model, few steps), and
the GPU-only rows say why they were skipped."""

import bench


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
    assert len(skipped) == 5 and all(row[3] == "needs a CUDA GPU |" for row in skipped)
    assert by_check["attention kernel"][0][2] == "flash_attention_for_cpu"
    assert "cached" in by_check["sampling"][0][2] and "uncached" in by_check["sampling"][0][2]
    resume = by_check["exact resume"][0]
    assert "losses identical" in resume[2] and resume[3].startswith("within the tolerance")
    memory = by_check["peak memory"][0]
    assert memory[2].startswith("measured") and "planned" in memory[2]
    assert not [row for row in rows if row[0] != "| peak memory" and "✗" in row[3]]  # the checks passed
