"""The interpretability suite: numbered experiments over the models' common interface.

    registry.py      number -> experiment (title, group, what it needs, its function)
    runner.py        choose, check inputs, run, write reports, the audit page and wandb logs
    context.py       the trained model, its random-init floor, a reference, the config, the validation text
    common.py        probe-token lookup, token spaces, small metrics, steering and ablation hooks
    nulls.py         other bases for the same procedure: rotated signal bases, the SVD basis of E
    statistics.py    p-values against nulls, paired tests, bootstrap intervals, Holm's correction
    report.py        NN_slug.md / .json / _*.png, written atomically; verdicts from corrected tests
    audit_page.py    audit_reports/index.html over every report
    signal_identity.py, semantic_properties.py, mechanistic_analysis.py, control_steering.py,
    related_work.py  the experiments, one module per group
"""

import matplotlib

matplotlib.use("Agg")  # reports are files: never open a window, and work on headless machines
