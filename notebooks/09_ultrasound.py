# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Ultrasound video
#
# The DAS paper {cite}`shankaranarayana2025das` also classifies ultrasound videos: frames play the role
# of slices, and most frames of a sweep repeat their neighbours. Its video experiments use the BUSV
# breast ultrasound videos {cite}`lin2022busv` (188 videos, benign or malignant) and a private gastric
# antrum set. Neither can be shipped with this book: BUSV is not redistributable and the gastric set is
# in-house. This chapter therefore has three parts, each labelled with what its data are:
#
# 1. the BUSV loader, demonstrated on a tiny folder in the BUSV layout that the notebook writes from
#    **synthetic** frames (a user with the real dataset sets `busv_root`);
# 2. an experiment on **synthetic** ultrasound-like videos, where the frames that show the lesion are
#    known;
# 3. a **real** ultrasound cine, the 30-frame echocardiogram that pydicom ships as a test file, with the
#    frames DAS keeps.

# %% tags=["parameters", "hide-input"]
# book scale this run belongs to (ci, laptop, gpu; set by the book builder)
scale = "laptop"
seed = 0  # seeds the synthetic frames of the layout demo and the Gumbel draws
device = "auto"  # where training runs ("auto": CUDA when present, else "cpu")
num_threads = 2  # torch CPU threads
# folder holding BUSV's rawframes/ (real data); None: the layout demo only
busv_root = None
methods = [
    "full",
    "uniform",
    "dps",
    "das",
]  # methods of the synthetic-video experiment
seeds = [0]  # training seeds of the experiment
epochs = 2  # training epochs per run
max_train_samples = 96  # training videos per run; 512 is the whole train split
max_eval_samples = 96  # validation and test videos per run (None: all)
# frame size (pixels, square) of the synthetic videos and the cine DAS sees
size = 32
# frames per video after resampling (BUSV, synthetic, the cine for trained DAS)
num_frames = 16
# run store of the book (relative to the repository root); runs go to
# <scale>/ultrasound
results_dir = "results/book"

# %% tags=["hide-cell"]
import tempfile
import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import Markdown, display
from PIL import Image

from das.chapters import (
    book_store,
    book_table,
    glue,
    setup_plots,
    show,
    sweep,
    trained_model,
)
from das.config import TrainConfig
from das.data import (
    load_busv,
    load_dataset,
    load_pydicom_cine,
    make_synthetic_ultrasound,
)
from das.data.ultrasound import resample_indices
from das.results import format_summary, summarize
from das.samplers import make_sampler
from das.sweep import Run

setup_plots()
torch.set_num_threads(num_threads)
store = book_store(results_dir, scale)
COLORS = {
    "full": "tab:gray",
    "random": "tab:olive",
    "uniform": "tab:green",
    "dps": "tab:blue",
    "adps": "tab:purple",
    "das": "tab:orange",
}


def filmstrip(
    frames: torch.Tensor,
    picked,
    columns: int,
    title: str,
    labels=None,
    color: str = "tab:orange",
    fade: bool = True,
) -> None:
    """Frames ``[T, 1, H, W]`` in rows of ``columns``; picked frames framed in ``color``, the others
    faded (``fade``) or shown as they are."""
    rows = -(-len(frames) // columns)
    height, width = frames.shape[-2:]
    side = 6.8 / columns  # the figure spans the text column
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(6.8, side * rows * height / width + 0.6),
        squeeze=False,
    )
    for t, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if t >= len(frames):
            ax.set_axis_off()
            continue
        keep = t in picked
        ax.imshow(
            frames[t, 0].numpy(),
            cmap="gray",
            vmin=0,
            vmax=1,
            alpha=1.0 if keep or not fade else 0.35,
        )
        ax.set_title(
            str(t if labels is None else labels[t]),
            color=color if keep else "gray",
            pad=2,
        )
        for spine in ax.spines.values():
            spine.set(
                color=color if keep else "lightgray",
                linewidth=2.5 if keep else 0.5,
            )
    fig.suptitle(textwrap.fill(title, 80))
    fig.tight_layout()
    show()


# %% [markdown]
# ## The BUSV loader
#
# BUSV stores each video as a folder of PNG frames, `rawframes/<class>/<video_id>/*.png`, with the
# classes `benign` and `malignant`. `das.data.load_busv` reads that layout: frames sorted by the
# numbers in their names (so `10.png` follows `9.png`), resampled to `num_frames` evenly spaced
# frames (frames repeat when a video is shorter), converted to grey and resized to
# `size` $\times$ `size`. Labels follow the class folders in sorted order. BUSV has no
# official split; `VolumeDataset.subset` makes one.
#
# Without the dataset, the cell below writes a **layout demo**: four short videos of **synthetic**
# ultrasound-like frames (from the generator used in the next section, not BUSV images), two per
# class folder, of different lengths, with frame names that are not zero-padded.

# %% tags=["nbval-check-output", "hide-input"]
lengths = {"benign": [20, 9], "malignant": [13, 24]}  # frames per demo video
demo_dir = tempfile.TemporaryDirectory(prefix="busv-layout-demo-")
demo_root = Path(demo_dir.name)
source = make_synthetic_ultrasound(
    4,
    num_frames=max(max(v) for v in lengths.values()),
    image_size=64,
    seed=seed,
)
video = 0
for label, counts in lengths.items():
    for number, count in enumerate(counts, 1):
        folder = demo_root / "rawframes" / label / f"video{number}"
        folder.mkdir(parents=True)
        for t in range(count):
            Image.fromarray(source.images[video, t, 0].numpy()).save(
                folder / f"{t + 1}.png"
            )
        video += 1
demo = load_busv(demo_root, num_frames=num_frames, image_size=size)
print(
    "layout:",
    *sorted(
        str(p.relative_to(demo_root)) for p in demo_root.glob("rawframes/*/*")
    ),
    sep="\n  ",
)
print(
    f"{len(demo)} videos of {demo.num_frames} frames, {size} x {size} pixels;",
    "labels",
    demo.labels.tolist(),
    "=",
    demo.label_names,
)
print("PNGs read as the frames, by video:")
for label, counts in lengths.items():
    for count in counts:
        frames = resample_indices(count, num_frames) + 1
        print(
            f"  {label:>9}, {count:>2} PNGs:",
            " ".join(map(str, frames.tolist())),
        )

# %% tags=["hide-input"]
if busv_root is None:
    filmstrip(
        demo[1][0],
        set(range(num_frames)),
        16,
        "Layout demo (SYNTHETIC frames): the 9-frame video read back as "
        f"{num_frames} frames; labels are the PNG numbers, repeated where the video is short",
        labels=(resample_indices(9, num_frames) + 1).tolist(),
        color="tab:gray",
    )
else:
    busv = load_busv(busv_root, num_frames=num_frames, image_size=size)
    print(busv)
    print(
        "videos per class:",
        dict(zip(busv.label_names, torch.bincount(busv.labels).tolist())),
    )
    filmstrip(
        busv[0][0],
        set(range(num_frames)),
        16,
        f"BUSV (real) video 0, {busv.label_names[int(busv.labels[0])]}",
        color="tab:gray",
    )
demo_dir.cleanup()

# %% [markdown]
# ## An experiment on synthetic ultrasound videos
#
# `das.data.make_synthetic_ultrasound` draws **synthetic** videos of a probe sweep: layered tissue with
# multiplicative Rayleigh speckle and log compression inside a sector-shaped field of view, drifting
# sideways frame by frame. In 4 consecutive frames out of 16, at a random position, the probe passes
# over a lesion, whose kind is the label: round hypoechoic, irregular hypoechoic or round
# hyperechoic. The other frames show only tissue, so a sampler that keeps half the frames can miss the
# lesion. One video (at 64 pixels here; the experiment uses `size`):

# %% tags=["hide-input"]
example = load_dataset(
    "synthetic_ultrasound", "test", size=64, num_samples=8, seed=seed
)
shown = int(example.informative.sum(1).argmax())
x_example = example[shown][0]
filmstrip(
    x_example,
    set(example.informative[shown].nonzero().flatten().tolist()),
    8,
    f"SYNTHETIC ultrasound video, label: {example.label_names[int(example.labels[shown])]}; framed in red: "
    "the frames that show the lesion (ground truth of the generator)",
    color="tab:red",
    fade=False,
)

# %% [markdown]
# Every method of the parameters cell is trained with the project's trainer on these videos at
# `size` pixels (MobileNetV3-Small per frame, Adam, 50% of the frames kept except by `full`),
# for `epochs` epochs on `max_train_samples` training videos, once per seed. Every run is one record of the
# results store (`results/book/<scale>/ultrasound/`); a rerun with the same parameters reads them back.

# %%
runs = [
    Run(
        "ultrasound",
        TrainConfig(
            dataset="synthetic_ultrasound",
            method=method,
            ratio=0.5,
            seed=run_seed,
            size=size,
            epochs=epochs,
            patience=None,
            max_train_samples=max_train_samples,
            max_eval_samples=max_eval_samples,
            dataset_options={"num_frames": num_frames},
            device=device,
            num_threads=num_threads,
            quiet=True,
        ),
    )
    for method in methods
    for run_seed in seeds
]
# The first DAS run keeps its checkpoint: its trained sampler is applied to the real cine below.
keep = [
    run
    for run in runs
    if run.config.method == "das" and run.config.seed == seeds[0]
]
outcomes = sweep([run for run in runs if run not in keep], store) + sweep(
    keep, store, keep_checkpoint=True
)
records = [outcome.record for outcome in outcomes]
table = summarize(records)
display(book_table(format_summary(table).set_index(["dataset", "method"])))
num_classes = len(records[0]["test_predictions"]["probs"][0])

# %% tags=["remove-cell"]
glue("n_train", records[0]["split_sizes"]["train"], display=False)
glue("n_test", records[0]["split_sizes"]["test"], display=False)
glue("n_seeds", len(seeds), display=False)
glue("n_epochs", epochs, display=False)
glue("chance", 100 / num_classes, display=False)
glue(
    "bacc_list",
    Markdown(
        "; ".join(
            f"{row.method} {100 * row.balanced_accuracy_mean:.1f}%"
            for row in table.itertuples()
        )
    ),
    display=False,
)

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(7, 3))
error = table["balanced_accuracy_std"].fillna(0) * 100
ax.bar(
    table["method"],
    100 * table["balanced_accuracy_mean"],
    yerr=error,
    capsize=4,
    color=[COLORS.get(m, "tab:gray") for m in table["method"]],
)
ax.axhline(100 / num_classes, color="black", linestyle=":", label="chance")
ax.set(
    ylabel="balanced accuracy (%)",
    title=f"Synthetic ultrasound videos, test split ({records[0]['split_sizes']['test']} videos)",
)
ax.set_ylim(0, 100)
ax.legend(frameon=False)
show()

# %% [markdown]
# With {glue:text}`n_epochs` epoch(s) on {glue:text}`n_train` synthetic training videos and
# {glue:text}`n_seeds` seed(s), the mean balanced accuracy on {glue:text}`n_test` synthetic test videos
# is: {glue:md}`bacc_list` (chance: {glue:text}`chance:.1f`%). These runs are short (the book's `gpu`
# scale trains longer, on every video, over three seeds); read them as a working pipeline rather than
# as a ranking of the methods.
#
# ## A real ultrasound cine: which frames DAS keeps
#
# pydicom ships one real ultrasound cine among its test files (`examples_ybr_color.dcm`: 30 frames of
# $240 \times 320$, a cardiac ultrasound loop). It has no label, so it can only show *which*
# frames a sampler keeps, not whether they help a diagnosis. Two forms of DAS are applied:
#
# - **the paper-literal form**, `base="variance"`: the base score of a frame is its standardised
#   variance ("temporal activity"), and at evaluation DAS keeps the $k$ frames of highest score. It
#   needs no training, so its choice on a real video is exactly the paper's rule, not an artefact of a
#   model trained on other data. It runs on all 30 frames at full resolution, keeping 15.
# - **the DAS trained above** on synthetic videos (learned base score), for comparison. It expects
#   `num_frames` frames of `size` pixels, so the cine is resampled to that many evenly spaced
#   frames and resized (which squeezes its 4:3 frames to squares). It was trained on synthetic data: its
#   choice shows how the learned rule transfers, nothing about the heart.

# %% tags=["nbval-check-output"]
cine = load_pydicom_cine()  # real, float32 [30, 1, 240, 320] in [0, 1]
T_cine = cine.shape[0]
literal = make_sampler("das", T_cine, T_cine // 2, base="variance").eval()
with torch.no_grad():
    literal_scores = literal.scores(cine[None])
    literal_picks = literal(cine[None]).indices[0].tolist()
uniform_picks = (
    make_sampler("uniform", T_cine, T_cine // 2)(cine[None]).indices[0].tolist()
)
print(
    "cine:",
    tuple(cine.shape),
    "= [T, C, H, W] (real, pydicom examples_ybr_color.dcm)",
)
print("DAS, base='variance', keeps:", literal_picks)
print("uniform keeps:              ", uniform_picks)

# %% tags=["remove-cell"]
glue("cine_first", literal_picks[0], display=False)
glue("cine_last", literal_picks[-1], display=False)
glue("cine_k", len(literal_picks), display=False)

# %%
title = f"Real echocardiogram cine (pydicom test file): the {len(literal_picks)} frames paper-literal DAS keeps"
filmstrip(
    cine, set(literal_picks), 10, title + " (base = frame variance) are framed"
)

# %% tags=["hide-input"]
rows = [
    ("uniform", uniform_picks, "tab:green"),
    ("DAS, variance (paper-literal)", literal_picks, "tab:orange"),
]
# the DAS trained above: its weights are in its first seed's kept checkpoint
if keep:
    das_model = trained_model(outcomes[-1], store)
    resampled = torch.as_tensor(
        resample_indices(T_cine, num_frames)
    )  # cine frame of each of the num_frames
    small = load_pydicom_cine(image_size=size)[
        resampled
    ]  # [num_frames, 1, S, S]
    with torch.no_grad():
        trained_picks = resampled[
            das_model.eval().sampler(small[None]).indices[0]
        ].tolist()
    print(
        f"trained DAS (synthetic videos), on {num_frames} of the {T_cine} frames, keeps cine frames:",
        trained_picks,
    )
    rows.append(("DAS, trained on synthetic videos", trained_picks, "tab:red"))

fig, ax = plt.subplots(figsize=(6.8, 2.6))
standardised = literal_scores.base[0].numpy()
ax.plot(
    range(T_cine),
    standardised,
    "o-",
    color="tab:gray",
    markersize=4,
    label="$a_{base}$ = standardised frame variance",
)
ax.set(xlabel="cine frame", ylabel="$a_{base}$")
low = standardised.min() - 0.5
for offset, (label, picks, color) in enumerate(rows):
    ax.scatter(
        picks,
        np.full(len(picks), low - 0.45 * offset),
        marker="s",
        color=color,
        label=label,
    )
ax.set_xlim(-0.5, T_cine - 0.5)
ax.legend(frameon=False, loc="upper left", ncol=2)
ax.grid(alpha=0.3)
show()

# %% [markdown]
# The paper-literal rule keeps {glue:text}`cine_k` frames, all between frame {glue:text}`cine_first`
# and frame {glue:text}`cine_last`: the frames of highest variance lie together in the part of the
# loop where the image is brightest and most contrasted, and the rest of the loop is dropped.
# Uniform sampling keeps every other frame across the whole loop. Which is better depends on the
# task: for a diagnosis that needs one cardiac phase, a block of frames may do; for one that needs the
# motion over the whole cycle, it does not. A learned base score (the default) can learn that from labels, which
# this single unlabelled cine cannot provide.
