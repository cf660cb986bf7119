"""The numbered experiments: number -> title, group, one-line summary, what it needs, where its code is.

The experiment modules (and matplotlib, seaborn, scikit-learn with them) are imported only when an
experiment runs, so the menu and every input error answer at once.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from core.i18n import N_

GROUPS = {
    "A": N_("Signal identity"),
    "B": N_("Semantic properties"),
    "C": N_("Mechanistic analysis"),
    "D": N_("Control and steering"),
    "E": N_("From related work"),
}


@dataclass(frozen=True)
class Experiment:
    number: int
    slug: str
    title: str  # English, as stored in reports and studies; shown through core.i18n
    group: str  # a key of GROUPS
    summary: str
    code: str  # "module.function" in experiments/; run(ctx, report) fills the report
    # Why it cannot run on gpt2 / gpt2-new (no recipes, no basis); None if it runs on every model.
    needs_recipes: str | None = None
    word_keys: tuple[str, ...] = ()  # config keys whose words must each be one GPT-2 token
    prompt_keys: tuple[str, ...] = ()  # config keys holding prompts
    needs_text: bool = False  # reads the validation text (data_dir/dataset/val.bin)
    # Why it cannot run without a teacher (distill_from or teacher_run); None if it needs none.
    needs_teacher: str | None = None

    @property
    def run(self) -> Callable:
        module, function = self.code.rsplit(".", 1)
        return getattr(importlib.import_module(f"experiments.{module}"), function)


EXPERIMENTS: dict[int, Experiment] = {e.number: e for e in [
    Experiment(1, "recipe_atlas", N_("Recipe Atlas"), "A",
               N_("nearest neighbours in recipe space; the most similar frequent pairs"),
               "signal_identity.recipe_atlas", word_keys=("probe_words", "word_groups"), needs_text=True),
    Experiment(2, "sparsity_profile", N_("Sparsity Profile"), "A",
               N_("recipe sparsity (Hoyer, L1 mass) against rotated signal bases; Gini of usage"),
               "signal_identity.sparsity_profile",
               needs_recipes=N_("it has no recipes and no signal basis, and embedding coordinates are not a "
                                "privileged basis whose sparsity would mean anything"), needs_text=True),
    Experiment(3, "basis_geometry", N_("Basis Geometry"), "A",
               N_("singular values, effective rank, condition number, coherence of W_basis"),
               "signal_identity.basis_geometry",
               needs_recipes=N_("it has no recipes and no signal basis: there is no W_basis to measure")),
    Experiment(4, "semantic_galaxy", N_("Semantic Galaxy"), "B",
               N_("PCA of the word groups' recipes, silhouette score"), "semantic_properties.semantic_galaxy",
               word_keys=("word_groups",)),
    Experiment(5, "semantic_algebra", N_("Semantic Algebra"), "B",
               N_("a - b + c analogies in recipe space, rank of the expected answer"),
               "semantic_properties.semantic_algebra", word_keys=("analogies",), needs_text=True),
    Experiment(6, "typo_resilience", N_("Typo Resilience"), "B",
               N_("hidden states and predictions of misspelled vs correct sentences"),
               "semantic_properties.typo_resilience", prompt_keys=("typo_sentences",)),
    Experiment(7, "layer_evolution", N_("Layer Evolution"), "C",
               N_("logit lens: target probability and rank by layer"), "mechanistic_analysis.layer_evolution",
               word_keys=("target_prompts",), prompt_keys=("target_prompts",)),
    Experiment(8, "signal_flow", N_("Signal Flow"), "C",
               N_("the residual stream in signal space, per layer and position"),
               "mechanistic_analysis.signal_flow",
               needs_recipes=N_("it has no recipes and no signal basis to project the residual stream on"),
               prompt_keys=("target_prompts",), needs_text=True),
    Experiment(9, "causal_ablation", N_("Causal Ablation"), "C",
               N_("remove top signals from the residual stream at every layer, vs rotated bases"),
               "mechanistic_analysis.causal_ablation",
               needs_recipes=N_("it has no recipes and no signal basis, so its logits do not split into "
                                "signal contributions"),
               word_keys=("target_prompts",), prompt_keys=("target_prompts",), needs_text=True),
    Experiment(10, "emotion_surgery", N_("Emotion Surgery"), "D",
               N_("steer with a sentiment direction: shift per layer, samples"),
               "control_steering.emotion_surgery",
               word_keys=("positive_words", "negative_words"), prompt_keys=("steer_prompts",)),
    Experiment(11, "concept_inception", N_("Concept Inception"), "D",
               N_("critical strength at which an injected concept takes over, per layer"),
               "control_steering.concept_inception", word_keys=("concept_words",),
               prompt_keys=("concept_prompt",)),
    Experiment(12, "genetic_hijack", N_("Genetic Hijack"), "D",
               N_("rewrite negative words' recipes, measure, restore bit for bit"),
               "control_steering.genetic_hijack", word_keys=("positive_words", "negative_words"),
               prompt_keys=("steer_prompts",), needs_text=True),
    Experiment(13, "representation_geometry", N_("Representation Geometry"), "E",
               N_("effective rank, isotropy, head similarity, MLP units above RMS per layer"),
               "related_work.representation_geometry", needs_text=True),
    Experiment(14, "signal_selectivity", N_("Signal Selectivity"), "E",
               N_("firing rate, selectivity and top contexts of every signal"),
               "related_work.signal_selectivity",
               needs_recipes=N_("it has no recipes and no signal basis to read activations along"),
               needs_text=True),
    Experiment(15, "signals_vs_saes", N_("Signals vs SAEs"), "E",
               N_("native signals, SVD directions and TopK SAEs at equal L0: variance and CE loss recovered"),
               "sae_comparison.signals_vs_saes", needs_text=True),
    Experiment(16, "teacher_agreement", N_("Teacher Agreement"), "E",
               N_("KL to a teacher's predictions; per-signal activation correlation, top-context overlap and "
                  "ablation agreement with it"),
               "teacher_agreement.teacher_agreement",
               needs_recipes=N_("it has no signal basis to pair with a teacher's signals"),
               needs_teacher=N_("it compares the model with a teacher, and none is named (--teacher_run=RUN, "
                                "or a model trained with distill_from)"), needs_text=True),
]}
