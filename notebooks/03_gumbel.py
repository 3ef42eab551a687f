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
# # From Gumbel-max to a differentiable sampler
#
# DAS, DPS and ADPS all pick frames with the same tool: perturb scores with Gumbel noise, take the
# argmax, and let gradients flow through a softmax relaxation of that argmax. This chapter derives the
# tool one step at a time and, after each equation, checks it numerically **against the project's own
# code** (`das.samplers.gumbel`), so a change to the sampler that breaks a property fails the book's
# regression tests.
#
# Every number in the text is computed below; the parameters cell sets the sample sizes.

# %% tags=["parameters", "hide-input"]
# book scale this run belongs to (ci, laptop, gpu; set by the book builder)
scale = "laptop"
seed = 0  # seeds every random draw in the chapter
# where the draws run; the checks are about distributions, not speed
device = "cpu"
num_draws = 100_000  # draws per empirical check (chi-square tests, frequencies)
# Monte Carlo samples per temperature for gradient bias and variance
grad_samples = 50_000

# %% tags=["hide-cell"]
import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import stats

from das.chapters import glue, setup_plots, show
from das.samplers.gumbel import gumbel_noise, gumbel_topk

setup_plots()

torch.set_num_threads(1)
device = torch.device(device)


def generator(offset: int = 0) -> torch.Generator:
    """A fresh CPU generator per check, so each check is reproducible on its own."""
    return torch.Generator().manual_seed(seed + offset)


# The categorical distribution used throughout: five outcomes (think: five frames).
probs = torch.tensor([0.05, 0.10, 0.20, 0.25, 0.40], dtype=torch.float64)
logits = probs.log().float().to(device)
T = len(probs)

# %% [markdown]
# ## The Gumbel-max theorem
#
# Let $G_1, \dots, G_T$ be independent standard Gumbel variables, $G_t = -\log(-\log U_t)$ with
# $U_t \sim \mathrm{Uniform}(0, 1)$. For any scores (logits) $a \in \mathbb{R}^T$,
#
# $$
# \arg\max_{t} \,(a_t + G_t) \;\sim\; \mathrm{Categorical}(\pi), \qquad
# \pi_t = \frac{e^{a_t}}{\sum_{s} e^{a_s}} = \operatorname{softmax}(a)_t .
# $$
#
# Sampling from a softmax is therefore "add noise, take the argmax": the randomness is separated from
# the parameters (the reparameterisation that makes everything below possible). The check: draw many
# argmaxes with the project's `gumbel_topk` ($k = 1$) and compare the frequencies with $\pi$ by
# chi-square goodness-of-fit tests, one per seed over several seeds. Under the theorem each statistic
# follows a chi-square law with $T - 1 = 4$ degrees of freedom, so the per-seed $p$-values are uniform
# on $[0, 1]$: a single small $p$ is expected once in a while, a pile-up near zero is not.

# %% tags=["nbval-check-output"]
replicates = 20  # independent tests, one seed each
expected_counts = probs.numpy() * num_draws
counts = np.zeros((replicates, T), dtype=np.int64)
for r in range(replicates):
    _, picks = gumbel_topk(
        logits.expand(num_draws, T), k=1, tau=1.0, generator=generator(100 + r)
    )
    counts[r] = torch.bincount(picks[:, 0].cpu(), minlength=T).numpy()
tests = [stats.chisquare(c, f_exp=expected_counts) for c in counts]
pvalues = np.array([t.pvalue for t in tests])
mean_chi2 = float(np.mean([t.statistic for t in tests]))
uniformity = stats.kstest(pvalues, "uniform")
print("softmax probabilities:", np.round(probs.numpy(), 3))
print("observed frequencies: ", np.round(counts.sum(0) / counts.sum(), 3))
print(f"mean chi-square over {replicates} seeds: {mean_chi2:.2f} (theory: 4)")
print("per-seed p-values, sorted:", np.round(np.sort(pvalues), 2))
print(
    f"Kolmogorov-Smirnov test that the p-values are uniform: p = {uniformity.pvalue:.3f}"
)

# %% tags=["remove-cell"]
glue("gm_draws", num_draws, display=False)
glue("gm_replicates", replicates, display=False)
glue("gm_mean_chi2", mean_chi2, display=False)
glue("gm_min_p", float(pvalues.min()), display=False)
glue("gm_ks_p", float(uniformity.pvalue), display=False)

# %% [markdown]
# Over {glue:text}`gm_replicates` seeds of {glue:text}`gm_draws:,` draws each, the mean statistic is
# {glue:text}`gm_mean_chi2:.2f` (a chi-square law with 4 degrees of freedom has mean 4), the smallest
# $p$-value is {glue:text}`gm_min_p:.3f`, and a Kolmogorov-Smirnov test of the $p$-values against the
# uniform law gives $p$ = {glue:text}`gm_ks_p:.3f`. Tests at fixed seeds are regression checks, not
# proofs: if a change to the sampler biased the picks by a percent, the statistics would jump by an
# order of magnitude and the stored reference outputs would no longer match.
#
# ## Gumbel-softmax: a relaxed argmax and its temperature
#
# The argmax has zero gradient almost everywhere. Replace the one-hot vector $e_{\arg\max}$ by a
# softmax at temperature $\tau > 0$ {cite}`jang2017gumbel,maddison2017concrete`:
#
# $$
# y_t(\tau) = \frac{\exp\big((a_t + G_t)/\tau\big)}{\sum_s \exp\big((a_s + G_s)/\tau\big)}, \qquad
# \lim_{\tau \to 0} y(\tau) = e_{\arg\max_t (a_t + G_t)}, \qquad
# \lim_{\tau \to \infty} y(\tau) = \tfrac{1}{T}\mathbf{1}.
# $$
#
# Low temperatures give samples close to one-hot (faithful, but the gradients are large and rare);
# high temperatures give smooth, almost uniform vectors. The check uses one noise draw from the
# project's `gumbel_noise` and measures the distance of $y(\tau)$ to the one-hot argmax and to uniform.

# %% tags=["nbval-check-output"]
noise = gumbel_noise((T,), device, generator(2))
perturbed = logits + noise
one_hot = torch.nn.functional.one_hot(perturbed.argmax(), T).float()
taus = [0.01, 0.1, 0.5, 1.0, 5.0, 100.0]
soft = {tau: torch.softmax(perturbed / tau, dim=-1) for tau in taus}
for tau in taus:
    to_hot = (soft[tau] - one_hot).abs().sum().item()
    to_uniform = (soft[tau] - 1 / T).abs().sum().item()
    print(
        f"tau = {tau:>6}: L1 to one-hot {to_hot:.3f}, L1 to uniform {to_uniform:.3f}"
    )

# %% tags=["hide-input"]
fig, axes = plt.subplots(1, len(taus), figsize=(6.8, 1.8), sharey=True)
for ax, tau in zip(axes, taus):
    ax.bar(range(T), soft[tau].cpu().numpy(), color="tab:blue")
    ax.bar(
        range(T), probs.numpy(), fill=False, edgecolor="black", linewidth=0.8
    )
    ax.set_title(f"tau = {tau}")
    ax.set_xticks(range(T))
axes[0].set_ylabel("soft sample $y_t$")
fig.suptitle(
    "One Gumbel-softmax sample at several temperatures (outline: $\\pi$)",
    y=1.04,
)
show()

# %% [markdown]
# The temperature changes the soft vector but never the position of its maximum: the hard pick is
# the same at every $\tau$. The project relies on this (DAS learns its temperature without changing
# which frames a given noise draw selects), so it is checked on `gumbel_topk` directly: the same seed
# at different temperatures must give identical picks.

# %% tags=["nbval-check-output"]
picks_by_tau = [
    gumbel_topk(logits.expand(1000, T), 1, tau, generator(3))[1]
    for tau in (0.1, 1.0, 10.0)
]
print(
    "identical picks at tau = 0.1, 1, 10:",
    all(torch.equal(picks_by_tau[0], p) for p in picks_by_tau),
)

# %% [markdown]
# ## The straight-through estimator and its bias
#
# A downstream network should see a real frame, not a blend of frames, so the forward pass keeps the
# hard one-hot vector. The straight-through (ST) estimator {cite}`bengio2013straightthrough` then
# borrows the gradient of the soft sample:
#
# $$
# \begin{aligned}
# P &= e_{\arg\max} + \big(y(\tau) - \operatorname{stopgrad}(y(\tau))\big)
#   && \text{(forward: } P = e_{\arg\max}\text{)}, \\
# \frac{\partial P}{\partial a} &:= \frac{\partial y(\tau)}{\partial a}
#   = \frac{1}{\tau}\big(\operatorname{diag}(y) - y y^{\top}\big).
# \end{aligned}
# $$
#
# First the two defining properties, on the project's `gumbel_topk`: rows are exactly one-hot, and the
# gradient that reaches the scores is the gradient of the soft sample.

# %% tags=["nbval-check-output"]
theta = logits.clone().requires_grad_(True)
weights, idx = gumbel_topk(theta.unsqueeze(0), 1, 0.5, generator(4))
print(
    "forward row:", weights[0, 0].detach().cpu().numpy(), "picked", idx.item()
)
probe = torch.arange(1.0, T + 1, device=device)  # any fixed downstream vector
(weights[0, 0] @ probe).backward()
with torch.no_grad():  # the same noise draw, relaxed by hand
    y = torch.softmax(
        (logits + gumbel_noise((1, T), device, generator(4))[0]) / 0.5, dim=-1
    )
    jacobian = (torch.diag(y) - torch.outer(y, y)) / 0.5
print(
    "ST gradient equals the soft gradient:",
    torch.allclose(theta.grad, jacobian @ probe, atol=1e-5),
)

# %% [markdown]
# The price of using one function forward and another backward is bias. Take a loss of the one-hot
# sample, $f(z) = \lVert z - b \rVert^2$ for a fixed $b$. Its expectation has an exact gradient,
#
# $$
# L(a) = \mathbb{E}_{i \sim \pi}\, f(e_i) = \sum_i \pi_i f(e_i), \qquad
# \nabla_a L = \pi \odot \big(f - \textstyle\sum_i \pi_i f_i\big),
# \quad f_i = f(e_i),
# $$
#
# while the ST estimator is $\hat g_{\mathrm{ST}} = \big(\partial y / \partial a\big)^{\top} \nabla f(e_i)$,
# whose mean is not $\nabla_a L$. For comparison, the score-function (REINFORCE) estimator
# $\hat g_{\mathrm{SF}} = f(e_i)\,(e_i - \pi)$ is unbiased. Below, one backward pass through
# `gumbel_topk` gives `grad_samples` ST gradients at once (one row of scores per sample), at several
# temperatures.

# %%
b = torch.tensor([0.2, 0.9, 0.1, 0.5, 0.3], device=device)
f_values = ((torch.eye(T, device=device) - b) ** 2).sum(
    -1
)  # f(e_i) for every outcome i
p = probs.float().to(device)
exact = p * (f_values - (p * f_values).sum())


def st_gradients(tau: float, offset: int) -> torch.Tensor:
    """``grad_samples`` straight-through gradients of f at temperature tau, one row per sample."""
    rows = logits.expand(grad_samples, T).clone().requires_grad_(True)
    weights, _ = gumbel_topk(rows, 1, tau, generator(offset))
    ((weights[:, 0] - b) ** 2).sum().backward()
    return rows.grad


def sf_gradients(offset: int) -> torch.Tensor:
    """Score-function (REINFORCE) gradients f(e_i) (e_i - pi) for the same kind of draws."""
    _, picks = gumbel_topk(
        logits.expand(grad_samples, T), 1, 1.0, generator(offset)
    )
    one_hot = torch.nn.functional.one_hot(picks[:, 0], T).float()
    return f_values[picks[:, 0], None] * (one_hot - p)


grid = [0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]
st = {tau: st_gradients(tau, 10 + i) for i, tau in enumerate(grid)}
sf = sf_gradients(99)


def summary(g: torch.Tensor) -> tuple[float, float, float]:
    """(norm of the bias, cosine with the exact gradient, total variance = trace of the covariance)."""
    mean = g.mean(0)
    cosine = torch.nn.functional.cosine_similarity(mean, exact, dim=0).item()
    return (mean - exact).norm().item(), cosine, g.var(0).sum().item()


# %% tags=["nbval-check-output"]
print("exact gradient:", np.round(exact.cpu().numpy(), 3))
print(f"{'estimator':>12} {'|bias|':>8} {'cosine':>7} {'variance':>9}")
rows = {f"ST tau={tau}": summary(g) for tau, g in st.items()} | {
    "REINFORCE": summary(sf)
}
for name, (bias, cosine, variance) in rows.items():
    print(f"{name:>12} {bias:8.3f} {cosine:7.2f} {variance:9.3f}")
# Monte Carlo error of the mean
sf_error = (sf.var(0).sum() / grad_samples).sqrt().item()

# %% tags=["remove-cell"]
glue("sf_bias", rows["REINFORCE"][0], display=False)
glue("sf_error", sf_error, display=False)
glue("st_bias_1", rows["ST tau=1.0"][0], display=False)
glue("st_cos_1", rows["ST tau=1.0"][1], display=False)
glue("exact_norm", exact.norm().item(), display=False)

# %% [markdown]
# The score-function mean lands on the exact gradient (bias {glue:text}`sf_bias:.3f`, within its Monte
# Carlo error of about {glue:text}`sf_error:.3f`), which also confirms the exact formula. The ST mean
# does not: at $\tau = 1$ its bias has norm {glue:text}`st_bias_1:.3f` against a gradient of norm
# {glue:text}`exact_norm:.3f`, although it still points the right way (cosine
# {glue:text}`st_cos_1:.2f`). A biased but well-aligned, low-variance direction is what makes ST
# trainable in practice, and why DPS, ADPS and DAS all use it.
#
# ## Gradient variance against temperature
#
# The Jacobian carries a factor $1/\tau$, and at low temperature $y(1-y)$ is almost always tiny but
# occasionally large: the estimator becomes spiky. Raising $\tau$ smooths it but moves the relaxation
# away from the hard sample the forward pass uses. The plot shows both sides of that trade-off (the
# dashed line is the size a Monte Carlo mean would show with no bias at all; below it the measured bias
# is noise).

# %% tags=["hide-input"]
bias_curve = [rows[f"ST tau={tau}"][0] for tau in grid]
var_curve = [rows[f"ST tau={tau}"][2] for tau in grid]
fig, (ax_var, ax_bias) = plt.subplots(1, 2, figsize=(6.8, 3.2))
ax_var.loglog(grid, var_curve, "o-", label="straight-through")
ax_var.axhline(
    rows["REINFORCE"][2],
    color="tab:red",
    linestyle="--",
    label="REINFORCE (unbiased)",
)
ax_var.set(
    xlabel="temperature $\\tau$",
    ylabel="total gradient variance",
    title="Variance",
)
ax_bias.semilogx(grid, bias_curve, "o-", label="straight-through")
# Size of the bias a finite sample would show with no bias at all: sqrt(trace(cov) / samples).
noise_floor = [np.sqrt(v / grad_samples) for v in var_curve]
ax_bias.semilogx(
    grid,
    noise_floor,
    color="tab:blue",
    linestyle="--",
    alpha=0.5,
    label="Monte Carlo noise level",
)
ax_bias.axhline(
    exact.norm().item(),
    color="gray",
    linestyle=":",
    label="$\\|\\nabla_a L\\|$",
)
ax_bias.set(
    xlabel="temperature $\\tau$",
    ylabel="norm of the bias",
    title="Bias of the mean ST gradient",
)
for ax in (ax_var, ax_bias):
    ax.legend(
        frameon=False, loc="center left" if ax is ax_bias else "upper right"
    )
    ax.grid(alpha=0.3, which="both")
fig.tight_layout()
show()
low, high = var_curve[0], var_curve[-1]
glue("var_ratio", low / high, display=False)
glue("tau_low", grid[0], display=False)
glue("tau_high", grid[-1], display=False)

# %% [markdown]
# From $\tau$ = {glue:text}`tau_low` to $\tau$ = {glue:text}`tau_high` the total variance falls by a
# factor of {glue:text}`var_ratio:.0f`. DAS makes $\tau$ a learned, per-input quantity
# ($\tau = \tau_0(0.5 + \sigma(\cdot))$, so within $[0.5\tau_0, 1.5\tau_0]$), which lets each input sit
# at its own point of this curve.
#
# ## Gumbel top-k: k frames without replacement
#
# A sampler that keeps $k$ frames needs $k$ *distinct* picks. Perturb the scores once and keep the $k$
# largest: the ordered top-$k$ of $a_t + G_t$ has the distribution of $k$ sequential draws without
# replacement {cite}`kool2019gumbeltopk,xie2019subset`,
#
# $$
# \Pr(i_1, \dots, i_k) = \prod_{j=1}^{k} \frac{\pi_{i_j}}{1 - \sum_{l<j} \pi_{i_l}} .
# $$
#
# The project implements two routes (see `das/samplers/gumbel.py`): scores shared by all rows (DPS: one
# noise draw, top-$k$) and one row of scores per pick (DAS: fresh noise per row, frames already taken
# masked with $-\infty$). With equal rows both must produce this law. The check, for $k = 2$: the
# frequencies of the 20 ordered pairs against the formula, one chi-square test per route.

# %% tags=["nbval-check-output"]
k = 2
pairs = [(i, j) for i in range(T) for j in range(T) if i != j]
expected = (
    np.array([probs[i] * probs[j] / (1 - probs[i]) for i, j in pairs])
    * num_draws
)
routes = {
    "shared scores (DPS)": logits.expand(num_draws, T),
    "row scores (DAS)": logits.expand(num_draws, k, T),
}
for offset, (route, route_scores) in enumerate(routes.items()):
    _, picks = gumbel_topk(route_scores, k, 1.0, generator(20 + offset))
    codes = (picks[:, 0] * T + picks[:, 1]).cpu()
    observed = torch.bincount(codes, minlength=T * T).numpy()[
        [i * T + j for i, j in pairs]
    ]
    test = stats.chisquare(observed, f_exp=expected)
    distinct = bool((picks[:, 0] != picks[:, 1]).all())
    print(
        f"{route}: all picks distinct {distinct}, chi-square {test.statistic:.2f} (df 19), p = {test.pvalue:.3f}"
    )

# %% [markdown]
# Sampling *with* replacement (the paper's literal formulation, kept as an option) draws every row
# independently, so a frame can be taken twice; with equal rows the chance that two picks coincide is
# $\sum_t \pi_t^2$.

# %% tags=["nbval-check-output"]
_, picks = gumbel_topk(
    logits.expand(num_draws, k, T), k, 1.0, generator(30), replacement=True
)
duplicates = (picks[:, 0] == picks[:, 1]).double().mean().item()
print(
    f"duplicate rate {duplicates:.3f} (expected sum pi^2 = {(probs**2).sum().item():.3f})"
)

# %% [markdown]
# ## What the sampler does with this
#
# The learnable samplers of the next chapters combine the three pieces: scores from a network, Gumbel
# noise and a (masked) argmax for $k$ distinct frames in the forward pass, and the straight-through
# softmax gradient at temperature $\tau$ in the backward pass. At evaluation the noise is dropped and
# the $k$ highest scores are kept.
