"""The paper's accuracy / compute trade-off (Tables 4-7, Figures 4-5) at small scale.

Howard et al. 2017 s.4.1-4.2 train every configuration from scratch with one
schedule and compare accuracy with mult-adds and parameters: depthwise separable
vs full convolutions (Table 4), thinner vs shallower (Table 5), the width
multiplier alpha (Table 6) and the resolution multiplier rho (Table 7), and plot
the 16 alpha x rho models on log-scale axes (Figures 4 and 5).

This module runs that design on any small classification set (the recipe
``recipes/tradeoff.py`` uses Fashion-MNIST): ``sweep_runs`` lists the runs,
``run_one`` trains one (``trainer.run``), ``summarize`` builds the tables beside
the paper's ImageNet numbers and ``plot`` draws Figures 4 and 5. The rows of the
resolution sweep mirror 224 / 192 / 160 / 128 one to one; the sizes are the
recipe's flag (64 / 56 / 48 / 40 by default: multiples of 8, rho 1, 0.875,
0.75, 0.625 against the paper's 1, 0.857, 0.714, 0.571).
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
from typing import Any

import keras

from mobilenet_zoo import weights_io
from mobilenet_zoo.backbone import MobileNetBackbone
from mobilenet_zoo.classification.classifier import MobileNetClassifier
from mobilenet_zoo.complexity import profile
from mobilenet_zoo.paper import PAPER_TABLES, SLIM_PARAMS_M, SLIM_TABLE
from mobilenet_zoo.training import classification as trainer
from mobilenet_zoo.training import run as training
from mobilenet_zoo.training.flags import parse_point  # noqa: F401  (re-exported)

ALPHAS = (1.0, 0.75, 0.5, 0.25)  # Table 6 / Figure 4
PAPER_SIZES = (224, 192, 160, 128)  # Table 7 / Figure 4


@dataclasses.dataclass(frozen=True)
class Run:
    """One configuration of the sweep and the seed it trains with."""

    alpha: float
    image_size: int
    variant: str = "separable"
    seed: int = 0

    @property
    def key(self) -> str:
        return f"{self.variant}_a{self.alpha:g}_s{self.image_size}_seed{self.seed}"

    @property
    def config_key(self) -> tuple[float, int, str]:
        return (self.alpha, self.image_size, self.variant)


def sweep_runs(
    alphas: tuple[float, ...] = ALPHAS,
    sizes: tuple[int, ...] = (64, 56, 48, 40),
    ablations: bool = True,
    seeds: int = 2,
    seed_points: tuple[tuple[float, int], ...] = ((1.0, 64), (0.5, 48), (0.25, 40)),
) -> list[Run]:
    """Every run: the alpha x size grid (Tables 6-7, Figures 4-5), the full-conv and
    shallow models at the largest size (Tables 4-5), and ``seeds - 1`` extra seeds
    of ``seed_points`` for the run-to-run spread. Grid first, so a stopped sweep
    has whole curves before repeats."""
    if not sizes or not alphas:
        raise ValueError("the sweep needs at least one alpha and one size.")
    if seeds < 1:
        raise ValueError(f"`seeds` must be >= 1, got {seeds}.")
    runs = [Run(a, s) for a in alphas for s in sizes]
    base = max(sizes)
    if ablations:
        # Each ablation with its partner: Table 4 compares with 1.0 MobileNet, Table 5 with 0.75.
        runs += [r for r in (Run(1.0, base), Run(0.75, base)) if r not in runs]
        runs += [Run(1.0, base, "full"), Run(1.0, base, "shallow")]
    for alpha, size in seed_points:
        if (alpha, size) not in {(r.alpha, r.image_size) for r in runs}:
            raise ValueError(f"seed point {alpha}@{size} is not in the sweep (alphas {alphas}, "
                             f"sizes {sizes}).")
        runs += [Run(alpha, size, "separable", seed) for seed in range(1, seeds)]
    return runs


def run_config(run: Run, config: trainer.ClassificationConfig) -> trainer.ClassificationConfig:
    """``config``'s schedule with ``run``'s architecture, from scratch."""
    return dataclasses.replace(config, alpha=run.alpha, image_size=run.image_size, variant=run.variant,
                               weights="scratch")


def run_identity(run: Run, config: trainer.ClassificationConfig, num_classes: int, num_train: int,
                 data: str) -> dict[str, Any]:
    """What ``run`` records in its folder (``trainer.run_identity``): its configuration,
    seed, classes, training-set size and ``data`` (a fingerprint of the examples)."""
    return trainer.run_identity(run_config(run, config), num_classes, num_train, data,
                                {"seed": run.seed})


def run_one(run: Run, config: trainer.ClassificationConfig, train_raw, test_raw, num_classes: int,
            out_dir: str, strategy, resume: bool, num_train: int, verbose: int = 0,
            data_description: str = "", data_fingerprint: str = "",
            keep_checkpoints: str = "last-best") -> dict[str, Any]:
    """Trains ``run`` from scratch with ``config``'s schedule; adds its complexity.

    ``resume`` continues the run's backup only if its folder records the same
    identity (``run_identity``; ``training.RunMismatchError`` otherwise)."""
    keras.utils.set_random_seed(run.seed)
    result = trainer.run(run_config(run, config), train_raw, test_raw, num_classes,
                         os.path.join(out_dir, run.key), strategy, resume, {}, num_train, None, verbose,
                         data_description, data_fingerprint, keep_checkpoints, {"seed": run.seed})
    prof = profile(MobileNetClassifier(MobileNetBackbone(
        alpha=run.alpha, input_shape=(run.image_size, run.image_size, 3), variant=run.variant),
        num_classes=num_classes))
    result.update(run=dataclasses.asdict(run), mult_adds_m=prof.mult_adds / 1e6,
                  params_m=prof.params / 1e6)
    training.write_results(os.path.join(out_dir, run.key), result)
    return result


def load_done(out_dir: str, run: Run, identity: dict[str, Any] | None = None,
              epochs_expected: int | None = None) -> dict[str, Any] | None:
    """The finished result of ``run`` under ``out_dir`` (``--resume`` skips it), else None.

    With ``identity`` (``run_identity``) a finished run trained with another
    configuration or on other data (e.g. a ``--smoke`` run's mock data) raises
    ``training.RunMismatchError`` naming the differences, instead of entering the tables;
    so does a finished run of another length than ``epochs_expected``."""
    folder = os.path.join(out_dir, run.key)
    try:
        with open(os.path.join(folder, "results.json")) as f:
            result = json.load(f)
    except (OSError, ValueError):
        return None
    if "mult_adds_m" not in result:
        return None
    if identity is not None:
        training.check_run_identity(folder, identity, resume=True)
    epochs = (result.get("config") or {}).get("epochs")
    if epochs_expected is not None and epochs != epochs_expected:  # finished: its length is its result
        raise training.RunMismatchError(
            f"--resume: {folder} holds a finished run of another schedule; nothing was changed. "
            f"Differences (recorded there, given now): config.epochs: {epochs!r} there, "
            f"{epochs_expected!r} now. Choose another --out, or pass --overwrite instead of --resume to start anew there.")
    return result


# ----------------------------------------------------------------------------
# Tables and figures
# ----------------------------------------------------------------------------
def _by_config(results: list[dict[str, Any]]) -> dict[tuple, dict[str, Any]]:
    """Per (alpha, size, variant): mean accuracy over seeds, spread, complexity."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        run = r["run"]
        groups.setdefault((run["alpha"], run["image_size"], run["variant"]), []).append(r)
    out = {}
    for key, rs in groups.items():
        accs = [100 * r["measured"]["top1"] for r in rs]
        out[key] = {"top1": statistics.mean(accs), "seeds": len(accs),
                    "spread": (max(accs) - min(accs)) if len(accs) > 1 else None,
                    "accs": accs, "mult_adds_m": rs[0]["mult_adds_m"], "params_m": rs[0]["params_m"],
                    "train_seconds": sum(r.get("train_seconds", 0) for r in rs)}
    return out


def _paper_size(size: int, sizes: list[int]) -> int | None:
    order = sorted(sizes, reverse=True)
    return PAPER_SIZES[order.index(size)] if size in order and order.index(size) < 4 else None


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Tables 4-7 in the paper's layout: our rows (accuracy, mult-adds, params at the
    sweep's size) beside the paper's ImageNet rows."""
    ours = _by_config(results)
    sizes = sorted({k[1] for k in ours}, reverse=True)
    base = sizes[0]
    tables = {}
    for key in ("4", "5", "6", "7"):
        rows = []
        for row in PAPER_TABLES[key]["rows"]:
            size = base if row["size"] == 224 else next(
                (s for s in sizes if _paper_size(s, sizes) == row["size"]), None)
            mine = ours.get((row["alpha"], size, row["variant"]))
            rows.append({"label": row["label"], "paper_top1": row["top1"],
                         "paper_mult_adds_m": row["published_mult_adds_m"],
                         "paper_params_m": row["published_params_m"],
                         "ours_label": row["label"].replace(str(row["size"]), str(size))
                         if size else f"{row['label']} (size not in the sweep)",
                         "ours": mine})
        tables[key] = {"title": PAPER_TABLES[key]["title"], "rows": rows}
    return {"base_size": base, "sizes": sizes, "tables": tables,
            "points": [{"alpha": k[0], "image_size": k[1], "variant": k[2], **v}
                       for k, v in sorted(ours.items())]}


def render_markdown(summary: dict[str, Any]) -> str:
    """The tables as Markdown (what the README shows)."""
    lines = []
    for table in summary["tables"].values():
        lines += [f"**{table['title']}**", "",
                  "| model (ours) | top-1 ours | M mult-adds ours | M params ours | "
                  "paper (ImageNet) | top-1 | M mult-adds | M params |",
                  "|---|---:|---:|---:|---|---:|---:|---:|"]
        for r in table["rows"]:
            o = r["ours"]
            if o is None:
                mine = "(not run) | | | "
            else:
                spread = f" ± {o['spread'] / 2:.1f} ({o['seeds']} seeds)" if o["spread"] is not None else ""
                mine = f"{o['top1']:.1f}%{spread} | {o['mult_adds_m']:.2f} | {o['params_m']:.2f} | "
            lines.append(f"| {r['ours_label']} | {mine}{r['label']} | {r['paper_top1']:.1f}% "
                         f"| {r['paper_mult_adds_m']:g} | {r['paper_params_m']:g} |")
        lines.append("")
    return "\n".join(lines)


def plot(summary: dict[str, Any], path: str, title: str = "") -> str:
    """Figures 4 and 5: accuracy vs mult-adds and vs parameters (log x), one curve per
    alpha, a point per resolution; the paper's ImageNet points (TF-slim release) on
    their own axes (top and right) to compare the shapes."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [p for p in summary["points"] if p["variant"] == "separable"]
    alphas = sorted({p["alpha"] for p in points}, reverse=True)
    colors = dict(zip(ALPHAS, ("C0", "C1", "C2", "C3")))
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    for ax, xkey, xlabel, paper_x in (
        (axes[0], "mult_adds_m", "mult-adds (millions, log)", lambda a, s: SLIM_TABLE[(a, s)][0]),
        (axes[1], "params_m", "parameters (millions, log)", lambda a, s: SLIM_PARAMS_M[a]),
    ):
        right = ax.twinx()  # the ImageNet points get their own x (top) and y (right) axes
        right.set_ylabel("paper: ImageNet top-1 (%)", fontsize=8)
        paper_ax = right.twiny()
        for alpha in alphas:
            mine = sorted((p for p in points if p["alpha"] == alpha), key=lambda p: p["image_size"])
            c = colors.get(alpha)
            ax.errorbar([p[xkey] for p in mine], [p["top1"] for p in mine],
                        yerr=[(p["spread"] or 0) / 2 for p in mine], marker="o", color=c,
                        label=f"ours alpha {alpha:g}", capsize=3)
            for p in mine:
                ax.annotate(str(p["image_size"]), (p[xkey], p["top1"]), fontsize=7,
                            textcoords="offset points", xytext=(3, -9))
            if all((alpha, s) in SLIM_TABLE for s in PAPER_SIZES):
                paper_ax.plot([paper_x(alpha, s) for s in reversed(PAPER_SIZES)],
                              [SLIM_TABLE[(alpha, s)][1] for s in reversed(PAPER_SIZES)],
                              ls="--", marker="x", color=c, alpha=0.55, label=f"paper alpha {alpha:g}")
        ax.set_xscale("log")
        paper_ax.set_xscale("log")
        for axis in (ax.xaxis, paper_ax.xaxis):  # decade labels only: minor ones overlap
            axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(f"ours: {xlabel} at {summary['base_size']}px and below")
        paper_ax.set_xlabel(f"paper (ImageNet, TF-slim release): {xlabel}", fontsize=8)
        ax.set_ylabel("ours: top-1 accuracy (%)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        paper_ax.legend(loc="upper left", fontsize=7)
    axes[0].set_title("Figure 4: accuracy vs mult-adds", fontsize=10, pad=28)
    axes[1].set_title("Figure 5: accuracy vs parameters", fontsize=10, pad=28)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()

    weights_io.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path
