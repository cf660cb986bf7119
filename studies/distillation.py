"""Signal distillation (issue 23 §4): can a 2-layer reflow learn from an 8-layer teacher, and does sharing
the teacher's signals (its W_basis, then its recipes too, frozen) help it beyond the teacher's logits?

The reFlow author asks whether a teacher and a student sharing W_basis can pass knowledge through the
signals. The arms (training/distillation.py defines each key):
- teacher_8_layers: the 8-layer reflow (the depth study's layers_8 run: shared, trained once);
- scratch: the 2-layer reflow on the LM loss alone (the depth study's layers_2 run);
- distilled: + the teacher's logits, (1 - 0.5) * LM + 0.5 * T^2 * KL at T = 2 (the keys' defaults);
- distilled_basis_frozen: + the teacher's W_basis, frozen;
- distilled_basis_recipes_frozen: + the teacher's W_recipe too, frozen: the student keeps the teacher's
  whole vocabulary matrix and learns only its blocks;
- distilled_rotated_basis_frozen: the control for the shared basis: the teacher's basis turned by a
  random rotation (rotate_basis_seed), so the signals keep their lengths and angles but not the
  directions the teacher's residual stream gave them.

Every student arm at seed s uses the teacher trained at seed 1 (one teacher, as in practice); the
students' seeds are shared between arms, so their comparisons are paired.

Primary metric: val loss (the study's held-out text; the student's own LM loss, never the mixed
objective). Exploratory: the students' native signals, median selectivity (14) and the causal ablation
percentile (9), and agreement with the teacher (16): KL(teacher || model) on the val text, the median
per-signal activation correlation with the teacher (and the share above 0.5), the median top-context
overlap and the Spearman agreement of per-signal ablation effects; experiment 16 defines each and puts
the signal measures beside a null that pairs signal s with a random teacher signal. The distilled arms
read their teacher from distill_from; scratch and the teacher arm name it with teacher_run, a key the
training never reads (their runs stay the depth study's). The teacher arm against the seed-1 teacher is
itself at seed 1, where experiment 16 skips (perfect by construction): at seeds 2-6 it measures how much
two independently trained 8-layer models agree, a reference for the students; its paired comparison
with distilled has 5 seeds. The KL stays exploratory: distillation is expected to lower it against
scratch, but no direction can be stated in advance for the other comparisons, and a primary metric
needs one for each.

    python study.py studies/distillation.py

Size as studies/_shakespeare_4x128.py (width 128, S = 128, 2,400 steps, corpus vocabulary). With the
depth study's runs already trained, this trains the 4 distilled arms x 6 seeds = 24 runs of 2 layers.
Measured on the 2-core Xeon (AVX-512, 2026-12-07), two side by side at one thread: the first students
took 0.66 s a step (~26 min a run). Over half of it was the distillation term: on one thread, with two
trainings beside it, the student's forward and backward took 520 ms, the teacher's forward 210 ms, and
the student with the KL over the 19,379-token readout 1,408 ms. With the KL by chunks of positions the
same measure gave 345, 138 and 537 ms: a step at ~0.65x (reasoned: ~17 min a run). Measured with it,
2026-12-07, two side by side and the experiments beside them: 0.37-0.6 s a step, ~20 min a run, ~4 h
for the 24. From nothing, add the depth study's 2- and 8-layer runs (~2.1 h). Experiments 9, 14 and 16
take 65-85 s a student.

At this size S = d = 128: the basis is square and of full rank, so a frozen basis only reparametrizes a
student's vocabulary matrix (any E = W_recipe @ W_basis stays reachable through its own recipes). The
basis arms then test how a fixed basis trains, not whether the teacher's signals pass through it. A wider
basis (S > d) of rank d leaves E as free; testing that needs S < d, or a loss on the signal activations.
See docs/studies.md for what the runs found.
"""

from studies._shakespeare_4x128 import *  # noqa: F403  shared: runs_dir, base_config, settings, seeds
from studies._shakespeare_4x128 import runs_dir

_TEACHER = f"{runs_dir}/n_layer=8_seed1"  # the run of the teacher_8_layers arm at seed 1
_DISTILLED = {"n_layer": 2, "distill_from": _TEACHER}
_BASIS = {**_DISTILLED, "init_basis_from": _TEACHER, "freeze_basis": True}
_COMPARED = {"teacher_run": _TEACHER}  # experiment 16's teacher for the arms without distill_from

description = ("2-layer reflow: scratch vs distilled from an 8-layer teacher, + its basis frozen, + its "
               "recipes frozen, + a rotated-basis control; width 128, S = 128, 2,400 steps, 6 seeds")
arms = {  # the teacher first: at seed 1 it is trained before the students that read it
    "teacher_8_layers": {"n_layer": 8, **_COMPARED},
    "scratch": {"n_layer": 2, **_COMPARED},
    "distilled": _DISTILLED,
    "distilled_basis_frozen": _BASIS,
    "distilled_basis_recipes_frozen": {**_BASIS, "init_recipes_from": _TEACHER, "freeze_recipes": True},
    "distilled_rotated_basis_frozen": {**_BASIS, "rotate_basis_seed": 0},
}
experiments = [9, 14, 16]
metrics = [
    "val loss",
    "14:median selectivity",
    "9:log-prob drop, the top signal: percentile in the basis null",
    "16:KL(teacher || model), nats per token",
    "16:activation correlation, median over signals",
    "16:share of signals with activation correlation above 0.5",
    "16:top-context overlap, median over signals",
    "16:ablation agreement (Spearman over signals)",
]
# Pre-registered: in each comparison the second arm is expected to reach the lower student val loss.
primary = {"val loss": "lower"}
comparisons = [
    ("scratch", "distilled"),
    ("distilled", "distilled_basis_frozen"),
    ("distilled_basis_frozen", "distilled_basis_recipes_frozen"),
    ("distilled_rotated_basis_frozen", "distilled_basis_frozen"),
    ("distilled", "teacher_8_layers"),
]
