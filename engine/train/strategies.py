"""Imbalance strategies, selectable by name and composable with ``+``.

A strategy string is parsed into a :class:`StrategyPlan` saying which sampler, which
class weighting, which loss form and which batch mixing to use. The functions here
compute exactly what each strategy changes (per-epoch sample indices, class weights,
logit offsets), so they can be tested and previewed without training.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from balancelab.engine.train.augment import elastic_augmentation, slant_augmentation, strong_augmentation
from balancelab.engine.train.samplers import StrategyError, draw_balanced, expected_balanced, imblearn_draw

__all__ = ["AXES", "BAGGING", "COMPONENTS", "STRATEGIES", "Axis", "Component", "StrategyError", "StrategyPlan",
           "class_weights_for_epoch", "components_on", "describe_strategies", "effective_class_mix",
           "effective_number_weights", "epoch_indices", "expected_epoch_counts", "inverse_frequency_weights",
           "log_prior", "member_strategy", "minority_classes", "parse_strategy", "register"]


@dataclass(frozen=True)
class Axis:
    """One independent choice a strategy makes; ``exclusive`` axes take at most one component."""

    key: str
    label: str  # the GUI form's row label
    exclusive: bool
    off_label: str  # what choosing nothing on this axis means


AXES: dict[str, Axis] = {a.key: a for a in (
    Axis("sampler", "Sampler", True, "none"),
    Axis("weighting", "Loss weighting", True, "none"),
    Axis("loss", "Loss form", False, "cross-entropy"),
    Axis("mixing", "Batch mixing", False, "none"),
    Axis("augmentation", "Minority classes", True, "the base preset for every class"),
    Axis("ensemble", "Ensemble", True, "one network"),
    Axis("retrain", "Classifier re-training", True, "none (keep the trained classifier)"),
)}


@dataclass(frozen=True)
class Component:
    """A strategy component: its axis, what it does, the settings it reads, and its behaviour.

    Samplers provide ``draw(labels, rng, sampling_strategy) -> indices`` (and optionally
    ``expected(counts, sampling_strategy) -> counts per epoch``); weightings provide
    ``weights(counts, epoch, beta, drw_epoch) -> per-class weights or None``; minority
    augmentations provide ``preset(base augment name) -> batch callable``. Loss forms and batch
    mixing are read by the training loop through :class:`StrategyPlan`.
    """

    name: str
    axis: str
    description: str
    params: tuple[str, ...] = ()  # TrainConfig fields the component reads
    draw: Callable | None = None
    expected: Callable | None = None
    weights: Callable | None = None
    sampling_names: tuple[str, ...] = ()  # imbalanced-learn's named sampling_strategy values it accepts
    feature_sampler: str = ""  # retrain axis: "class-balanced" (cRT) or an imbalanced-learn over-sampler class
    preset: Callable | None = None  # augmentation axis: base augment name -> the minority classes' augmentation


COMPONENTS: dict[str, Component] = {}
# every name the parser accepts -> its description: "none" and each registered component (register() adds it)
STRATEGIES: dict[str, str] = {"none": "plain cross-entropy on the data as it is"}  # name -> description


def register(component: Component) -> Component:
    """Add a component to the registry: the parser, CLI help, GUI form and benches all read it."""
    if component.axis not in AXES:
        raise ValueError(f"unknown axis {component.axis!r} for {component.name}")
    if component.name in COMPONENTS or component.name == "none":
        raise ValueError(f"strategy component {component.name!r} registered twice")
    if component.axis == "sampler" and component.draw is None:
        raise ValueError(f"sampler {component.name!r} needs draw()")
    if component.axis == "weighting" and component.weights is None:
        raise ValueError(f"weighting {component.name!r} needs weights()")
    if component.axis == "augmentation" and component.preset is None:
        raise ValueError(f"augmentation {component.name!r} needs preset()")
    if component.axis == "retrain" and not component.feature_sampler:
        raise ValueError(f"re-training {component.name!r} needs a feature_sampler")
    COMPONENTS[component.name] = component
    STRATEGIES[component.name] = component.description
    return component


def components_on(axis: str) -> list[Component]:
    return [c for c in COMPONENTS.values() if c.axis == axis]


@dataclass(frozen=True)
class StrategyPlan:
    """A parsed strategy: its canonical name and its components, with the questions the loop asks."""

    name: str
    components: tuple[str, ...] = ()

    def has(self, component: str) -> bool:
        return component in self.components

    def on(self, axis: str) -> list[str]:
        return [c for c in self.components if COMPONENTS[c].axis == axis]

    @property
    def sampler(self) -> str | None:
        return next(iter(self.on("sampler")), None)

    @property
    def weighting(self) -> str | None:
        return next(iter(self.on("weighting")), None)

    focal = property(lambda self: self.has("focal"))
    balanced_softmax = property(lambda self: self.has("balanced-softmax"))
    mixup = property(lambda self: self.has("mixup"))
    cutmix = property(lambda self: self.has("cutmix"))

    @property
    def minority_augmentation(self) -> Component | None:
        """The augmentation component applied to minority-class images instead of the base preset."""
        return next((COMPONENTS[c] for c in self.on("augmentation")), None)
    remix = property(lambda self: self.has("remix"))
    minority_mixup = property(lambda self: self.has("minority-mixup"))

    @property
    def retrain(self) -> str | None:
        """The classifier re-training component run after the epochs, or None."""
        return next(iter(self.on("retrain")), None)


def parse_strategy(text: str) -> StrategyPlan:
    """``a+b+c`` -> a plan; unknown names, repeats and two components on an exclusive axis are refused."""
    if not isinstance(text, str):
        raise StrategyError(f"a strategy is a name, not {type(text).__name__}")
    parts = [p.strip().lower() for p in text.split("+") if p.strip()]
    if not parts:
        raise StrategyError("empty strategy; use 'none' for plain training")
    unknown = [p for p in parts if p not in STRATEGIES]
    if unknown:
        raise StrategyError(f"unknown strategy '{unknown[0]}'; choose from: {', '.join(STRATEGIES)}")
    if len(set(parts)) != len(parts):
        raise StrategyError(f"strategy '{text}' names a component twice")
    if "none" in parts:
        if len(parts) > 1:
            raise StrategyError("'none' cannot be combined with other strategies")
        return StrategyPlan("none")
    for axis in AXES.values():
        chosen = [p for p in parts if COMPONENTS[p].axis == axis.key]
        if axis.exclusive and len(chosen) > 1:
            raise StrategyError(f"choose one {axis.label.lower()}, not {' and '.join(chosen)}")
    return StrategyPlan("+".join(parts), tuple(parts))


def describe_strategies() -> str:
    """The registry as text, grouped by axis (the CLI's ``strategies`` command prints it)."""
    width = max(18, *(len(name) for name in STRATEGIES))
    lines = [f"{'none':<{width + 2}} {STRATEGIES['none']}"]
    for axis in AXES.values():
        lines.append(f"\n{axis.label} ({'choose one' if axis.exclusive else 'combinable'}):")
        for c in components_on(axis.key):
            params = f"  [settings: {', '.join(c.params)}]" if c.params else ""
            lines.append(f"  {c.name:<{width}} {c.description}{params}")
    lines.append("\nCombine components of different axes with '+', e.g. oversample+minority-augment, "
                 "balanced-sampler+focal or oversample+minority-augment+crt-smote.")
    return "\n".join(lines)


# --- samplers (their draw functions are in samplers.py) ---------------------------------------

def epoch_indices(plan: StrategyPlan, labels: np.ndarray, epoch: int, seed: int,
                  sampling_strategy=None) -> np.ndarray:
    """Indices (into ``labels``) the model sees in one epoch, shuffled; re-drawn per epoch."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, epoch])
    if plan.sampler is not None:
        return COMPONENTS[plan.sampler].draw(labels, rng, sampling_strategy)
    return rng.permutation(len(labels))


def expected_epoch_counts(plan: StrategyPlan, counts: np.ndarray, sampling_strategy=None) -> np.ndarray:
    """Expected number of images per class the model sees in one epoch (for previews and priors)."""
    counts = np.asarray(counts, dtype=np.float64)
    if plan.sampler is None:
        return counts
    component = COMPONENTS[plan.sampler]
    if component.expected is not None:
        return component.expected(counts, sampling_strategy)
    labels = np.repeat(np.arange(len(counts)), counts.astype(int))  # draw one epoch and count it
    idx = epoch_indices(plan, labels, 0, 0, sampling_strategy)
    return np.bincount(labels[idx], minlength=len(counts)).astype(np.float64)


# --- loss weighting -----------------------------------------------------------------------------

def inverse_frequency_weights(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    return w * (np.count_nonzero(w) / w.sum())


def effective_number_weights(counts: np.ndarray, beta: float) -> np.ndarray:
    """Cui et al. 2019: w_c proportional to (1 - beta) / (1 - beta^n_c), normalised to sum to C."""
    counts = np.asarray(counts, dtype=np.float64)
    effective = 1.0 - np.power(beta, counts)
    w = np.where(counts > 0, (1.0 - beta) / np.maximum(effective, 1e-12), 0.0)
    return w * (np.count_nonzero(w) / w.sum())


def class_weights_for_epoch(plan: StrategyPlan, counts: np.ndarray, epoch: int, beta: float,
                            drw_epoch: int) -> np.ndarray | None:
    """Loss weights for ``epoch`` (0-based), or None for unweighted. ``counts`` = what the model sees."""
    if plan.weighting is None:
        return None
    return COMPONENTS[plan.weighting].weights(np.asarray(counts, dtype=np.float64), epoch, beta, drw_epoch)


def log_prior(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    prior = counts / counts.sum()
    return np.log(np.maximum(prior, 1e-12))


def minority_classes(counts: np.ndarray) -> np.ndarray:
    """Boolean mask of classes whose count is below the median class count."""
    counts = np.asarray(counts, dtype=np.float64)
    return counts < np.median(counts)


def effective_class_mix(plan: StrategyPlan, counts, beta: float = 0.999, drw_epoch: int = 0,
                        sampling_strategy=None, epoch: int | None = None) -> dict:
    """What the model 'sees' per class in an epoch: sampled images and their share of the loss."""
    seen = expected_epoch_counts(plan, np.asarray(counts), sampling_strategy)
    last_epoch = 10**6 if epoch is None else epoch
    weights = class_weights_for_epoch(plan, seen, last_epoch, beta, drw_epoch)
    mass = seen * (weights if weights is not None else 1.0)
    if plan.balanced_softmax:
        # logit adjustment equalises the effective prior: each class's gradient mass becomes uniform
        mass = np.where(seen > 0, seen.sum() / max(1, np.count_nonzero(seen)), 0.0)
    total = mass.sum() or 1.0
    return {"samples_per_epoch": seen.tolist(), "loss_share": (mass / total).tolist()}


# --- the registry -------------------------------------------------------------------------------
# One entry per component. Adding a sampler or a weighting touches only this file; a loss form,
# batch mixing or augmentation also needs its hook in the training loop (losses.py / augment.py).


for _c in (
    Component("oversample", "sampler", "imbalanced-learn RandomOverSampler: repeat minority images each epoch",
              ("sampling_strategy",), draw=imblearn_draw("RandomOverSampler"),
              sampling_names=("auto", "minority", "not minority", "not majority", "all")),
    Component("undersample", "sampler", "imbalanced-learn RandomUnderSampler: a fresh balanced subset of the "
              "majority classes each epoch", ("sampling_strategy",), draw=imblearn_draw("RandomUnderSampler"),
              sampling_names=("auto", "majority", "not minority", "not majority", "all")),
    Component("balanced-sampler", "sampler", "WeightedRandomSampler with weight 1/n_class per image, re-drawn "
              "each epoch", draw=draw_balanced, expected=expected_balanced),
    Component("weighted-loss", "weighting", "cross-entropy weighted by inverse class frequency",
              weights=lambda counts, epoch, beta, drw_epoch: inverse_frequency_weights(counts)),
    Component("effective-number", "weighting", "class-balanced loss weights (1-beta)/(1-beta^n), Cui et al. 2019",
              ("beta",), weights=lambda counts, epoch, beta, drw_epoch: effective_number_weights(counts, beta)),
    Component("drw", "weighting", "deferred re-weighting: plain loss first, class-balanced weights from drw_epoch "
              "on (Cao et al. 2019)", ("drw_epoch", "beta"),
              weights=lambda counts, epoch, beta, drw_epoch: effective_number_weights(counts, beta)
              if epoch >= drw_epoch else None),
    Component("focal", "loss", "focal loss (1-p)^gamma * CE, down-weights easy examples", ("focal_gamma",)),
    Component("balanced-softmax", "loss", "logit-adjusted loss: logits + log prior during training "
              "(Ren et al. 2020, Menon et al. 2021)"),
    Component("mixup", "mixing", "MixUp on batches (torchvision transforms.v2)", ("mixup_alpha",)),
    Component("cutmix", "mixing", "CutMix on batches (torchvision transforms.v2)", ("cutmix_alpha",)),
    Component("minority-augment", "augmentation", "stronger augmentation for images of classes below the "
              "median count", ("augment",), preset=strong_augmentation),
    Component("minority-elastic", "augmentation", "elastic distortion (Simard et al. 2003) with the shift, scale "
              "and rotation of minority-augment, without erasing, for images of classes below the median count: "
              "each repeat of a rare image is a new plausible shape", ("augment",), preset=elastic_augmentation),
    Component("minority-slant", "augmentation", "the shift, scale and rotation of minority-augment plus a random "
              "slant (shear up to 15 degrees) instead of erasing, for images of classes below the median count",
              ("augment",), preset=slant_augmentation),
):
    register(_c)


# balanced bagging: k networks on different balanced under-samples, averaged (engine/train/bagging.py)
BAGGING = register(Component(
    "balanced-bagging", "ensemble", "k networks, each on a different under-sample of the classes above a cap "
    "(every smaller class whole), probabilities averaged (EasyEnsemble / BalancedBaggingClassifier); the other "
    "components apply inside each member", ("bagging_members", "bagging_fraction")))


def member_strategy(plan: StrategyPlan) -> str:
    """The strategy each bagging member trains with: the plan without its ensemble component."""
    rest = [c for c in plan.components if COMPONENTS[c].axis != "ensemble"]
    return "+".join(rest) or "none"
# image-space synthesis for minority classes, and decoupled classifier re-training (Kang et al. 2020):
# after the epochs, the penultimate features of the training split are balanced and only the last
# linear layer is re-trained on them (engine/train/decoupled.py, run by engine/train/run.py)
_RETRAIN_PARAMS = ("retrain_epochs", "retrain_lr")
for _c in (
    Component("remix", "mixing", "Remix (Chou et al. 2020): per-pair mixup whose label goes to the rarer image when "
              "its class is kappa times rarer and it covers at least tau of the mix", ("mixup_alpha", "remix_kappa",
                                                                                       "remix_tau")),
    Component("minority-mixup", "mixing", "mixes each minority-class image (below the median count) with another "
              "image of the same class in the batch (50-100 % itself): new minority images, label unchanged"),
    Component("crt", "retrain", "cRT: re-train only the last layer on class-balanced re-sampled features of the "
              "trained network", _RETRAIN_PARAMS, feature_sampler="class-balanced"),
    Component("crt-smote", "retrain", "re-train the last layer on features balanced with SMOTE (new minority "
              "points between neighbours)", _RETRAIN_PARAMS, feature_sampler="SMOTE"),
    Component("crt-borderline-smote", "retrain", "re-train the last layer on features balanced with "
              "BorderlineSMOTE (new points near the class borders)", _RETRAIN_PARAMS, feature_sampler="BorderlineSMOTE"),
    Component("crt-adasyn", "retrain", "re-train the last layer on features balanced with ADASYN (more new points "
              "where the class is hard)", _RETRAIN_PARAMS, feature_sampler="ADASYN"),
    Component("crt-svm-smote", "retrain", "re-train the last layer on features balanced with SVMSMOTE (new points "
              "along an SVM's support vectors)", _RETRAIN_PARAMS, feature_sampler="SVMSMOTE"),
    Component("crt-kmeans-smote", "retrain", "re-train the last layer on features balanced with KMeansSMOTE (new "
              "points inside k-means clusters)", _RETRAIN_PARAMS, feature_sampler="KMeansSMOTE"),
):
    register(_c)
