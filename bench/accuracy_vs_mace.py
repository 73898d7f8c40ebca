"""TransIP vs MACE at equal data and equal wall-clock budget, evaluated on the same held-out molecules.

Both models train on the same training frames (the shipped set's train side, or an evenly spread subset of it)
for the same wall-clock budget, in two processes side by side with one thread each, and are evaluated on the
held-out molecules of the shipped split (never trained on): energy and force MAE overall and per charge/spin state,
vertical gaps (MACE has no charge/spin input unless --mace-charge-spin, so its gaps are then zero by
construction: reported, not hidden),
and the learning curves (validation force MAE against wall time) as a PNG.

    OMP_NUM_THREADS=1 python bench/accuracy_vs_mace.py --budget-min 20 --train-frames 6000

TransIP trains with the project's trainer (`transip-md train --time-budget`, the shipped recipe unless
--transip-args says otherwise), which stops at the budget and exports its best-validation epoch; MACE
(bench/mace_peer.py) trains for the same seconds. Each side stores its finished result in
``--workdir``/SIDE/result.json.gz; the same command started again reuses it (same data, split, budget and that
side's settings) and trains only what is missing. Needs `pip install mace-torch`.

A finished trainer run can stand in for the TransIP side (``--transip-from-run DIR``, checked against the
command the bench would run) and an earlier report's MACE side for training MACE again (``--mace-from-report
JSON``, same data, seed, budget and MACE settings); the report says which side was read back.

Runs of one setting with different ``--seed`` (which also redraws the train/validation split; the held-out
molecules stay) are summarised, mean and spread, by

    python bench/accuracy_vs_mace.py --summarize A.json B.json --output bench/results/NAME
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

    from transip_md.train.losses import ForceLoss

HERE = Path(__file__).resolve().parent
#: Validation share of the non-held-out molecules (the same partition as `transip-md train --val-fraction`).
VAL_FRACTION = 0.05
ROOT = HERE.parent


def _subset(ids: list[int], n: int | None) -> list[int]:
    if n is None or n >= len(ids):
        return list(ids)
    return [ids[int(k)] for k in np.unique(np.linspace(0, len(ids) - 1, n).round().astype(int))]


def load_split(data: str | None, train_frames: int | None, val_frames: int, seed: int):
    from transip_md.data import default_dataset_path
    from transip_md.train.data import read_frames
    from transip_md.train.heldout import partition

    path = data or str(default_dataset_path())
    frames, _ = read_frames(path)
    train, val, held = partition(frames, VAL_FRACTION, seed)
    if not held:
        raise SystemExit(f"{path}: no held-out molecules flagged; this bench needs the project's split")
    return path, frames, _subset(train, train_frames), _subset(val, val_frames), held


def transip_command(job: dict) -> list[str]:
    """The `transip-md train` command of the TransIP side (same partition, seed and spread subsets)."""
    cmd = [
        sys.executable, "-m", "transip_md.cli", "train", "--data", job["data_path"],
        "-o", str(Path(job["workdir"]) / "transip"),
        "--val-fraction", str(VAL_FRACTION), "--set", f"split_seed={job['seed']}",
        "--max-val-frames", str(job["val_frames"]), "--no-progress", "--no-plots", "--threads", "1",
        "--seed", str(job["seed"]), "--time-budget", str(job["budget_s"]),
        *force_loss_flags(job), *shlex.split(job["transip_args"]),
    ]  # fmt: skip
    if job["train_frames"] is not None:
        cmd += ["--max-frames", str(job["train_frames"])]
    return cmd


#: Force weight of each side with the squared error; smooth L1 gets SMOOTH_L1_WEIGHT_SCALE of it (its gradient per
#: component is 1 above beta where the squared error's is 2e, e ~ 0.3 eV/Å typical: halving keeps the balance).
MSE_FORCE_WEIGHT = {"transip": 1.0, "mace": 10.0}
SMOOTH_L1_WEIGHT_SCALE = 0.5


def job_force_loss(job: dict) -> ForceLoss:
    """The force-term form of both sides (jobs written before the option: the squared error)."""
    from transip_md.train.losses import ForceLoss

    return ForceLoss(
        job.get("force_loss", RESULT_DEFAULTS["force_loss"]),
        job.get("force_loss_beta", RESULT_DEFAULTS["force_loss_beta"]),
    )


def side_force_weight(job: dict, side: str) -> float:
    """The force-term weight of ``side`` under the job's force loss."""
    scale = SMOOTH_L1_WEIGHT_SCALE if job_force_loss(job).form == "smooth_l1" else 1.0
    return scale * MSE_FORCE_WEIGHT[side]


def force_loss_flags(job: dict) -> list[str]:
    """Trainer flags for the job's force loss (before --transip-args, so flags given there win)."""
    loss = job_force_loss(job)
    if loss.form == "mse":
        return []
    return [
        "--force-loss", loss.form, "--force-loss-beta", str(loss.beta),
        "--force-weight", str(side_force_weight(job, "transip")),
    ]  # fmt: skip


def transip_result(run: Path, cmd: list[str], wall: float | None) -> dict:
    """The TransIP side's result: its exported best-validation model and learning curve (from log.csv)."""
    curve = []
    with open(run / "log.csv") as fh:
        for row in csv.DictReader(fh):
            curve.append(
                {"time_s": float(row["time_s"]), "val_force_mae_meV_per_A": float(row["val_force_mae_meV_per_A"])}
            )
    return {"model": str(run / "model.pt"), "curve": curve, "wall_s": wall, "command": " ".join(cmd)}


def command_config(cmd: list[str]) -> dict:
    """The TrainConfig (as JSON data) that a ``python -m transip_md.cli train ...`` command line makes."""
    from transip_md.cli import build_parser
    from transip_md.train.commands import build_train_config

    args = build_parser().parse_args(cmd[cmd.index("transip_md.cli") + 1 :])
    return json.loads(json.dumps(build_train_config(args).to_dict()))


def transip_from_run(job: dict, run_dir: str, expected: dict) -> dict:
    """Read back a finished ``transip-md train`` run as the TransIP side: its ``config.json`` must be
    ``expected``, the config this bench's command makes (``command_config``), its output folder aside, and it must
    have exported ``model.pt``."""
    run = Path(run_dir)
    for name in ("config.json", "log.csv", "model.pt"):
        if not (run / name).exists():
            raise SystemExit(f"{run}: no {name}; --transip-from-run needs a finished training run")
    stored = json.loads((run / "config.json").read_text())
    differ = sorted(k for k in set(stored) | set(expected) if k != "output" and stored.get(k) != expected.get(k))
    if differ:
        details = "; ".join(f"{k}: run {stored.get(k)!r}, bench {expected.get(k)!r}" for k in differ)
        raise SystemExit(f"{run}/config.json is not this bench's TransIP command ({details})")
    return {**transip_result(run, transip_command(job), None), "reused_from": str(run)}


#: Report settings that must be equal for runs to be summarised together (seeds, and so splits, may differ).
SUMMARY_KEYS = ("budget_s", "mace_charge_spin", "force_loss", "force_loss_beta", "held_frames", "held_molecules")
#: Report settings a MACE side read back from an earlier report must share with this run: the same setting, and
#: the same data, seed and so split.
MACE_REPORT_KEYS = ("data", "seed", "train_frames", "val_frames", *SUMMARY_KEYS)


def mace_from_report(report_path: str, meta: dict) -> tuple[dict, dict]:
    """MACE's (result, held-out evaluation) taken from an earlier report of this bench with the same data, seed,
    budget and MACE settings (``meta`` holds this run's values; its raw predictions need not be kept)."""
    with open(report_path) as fh:
        report = json.load(fh)
    old = report["meta"]
    for key in MACE_REPORT_KEYS:
        mine, theirs = meta.get(key), old.get(key, RESULT_DEFAULTS.get(key))
        if key == "data":  # a path of the machine that made it: the file's name (the frame counts are checked too)
            mine, theirs = Path(mine).name, Path(str(theirs)).name
        if theirs != mine:
            raise SystemExit(
                f"{report_path}: {key} = {old.get(key)!r}, but this run has {meta.get(key)!r}; "
                "MACE can be read back only from a report of the same data, seed, budget and MACE settings"
            )
    where = old.get("reused", {}).get("MACE")
    origin = str(report_path) + (f" (whose MACE is the stored run in {where})" if where else "")
    return {"curve": report["curves"]["MACE"], "reused_from": origin}, report["evaluation"]["MACE"]


def run_transip(job: dict) -> dict:
    """Train TransIP through the CLI until the budget; the trainer exports its best-validation epoch."""
    run = Path(job["workdir"]) / "transip"
    cmd = transip_command(job)
    start = time.perf_counter()
    done = subprocess.run(cmd, check=False, capture_output=True, text=True)
    wall = time.perf_counter() - start
    (run / "train.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"TransIP training failed ({done.returncode}): {done.stderr[-2000:]}")
    return transip_result(run, cmd, wall)


def run_mace(job: dict) -> dict:
    import torch

    sys.path.insert(0, str(HERE))
    from mace_peer import MacePeer

    from transip_md.train.baseline import fit_energy_baseline

    torch.set_num_threads(1)
    _, frames, train, val, held = load_split(job["data"], job["train_frames"], job["val_frames"], job["seed"])
    elements = sorted({int(z) for f in frames for z in f.numbers})
    e0 = fit_energy_baseline(frames, train, elements).element_energies
    peer = MacePeer(
        frames, train, val, elements, e0, seed=job["seed"], charge_spin=job["mace_charge_spin"],
        force_loss=job_force_loss(job), force_weight=side_force_weight(job, "mace"),
    )  # fmt: skip
    start = time.perf_counter()
    curve = peer.fit(job["budget_s"], eval_every_s=job["mace_eval_every_s"])
    wall = time.perf_counter() - start
    preds = peer.predict(frames, held)
    return {"curve": curve, "wall_s": wall, "preds": {i: (e, f.tolist()) for i, (e, f) in preds.items()}}


#: Job keys that decide a side's result: a stored result is reused only when all of them are unchanged.
RESULT_KEYS = ("data_path", "train_frames", "val_frames", "seed", "budget_s", "force_loss", "force_loss_beta")
RESULT_DEFAULTS = {"force_loss": "mse", "force_loss_beta": 0.05}  # jobs written before the option existed
SIDE_KEYS = {"transip": ("transip_args",), "mace": ("mace_charge_spin", "mace_eval_every_s")}


def side_result(job: dict, side: str) -> dict:
    """Train one side, or reuse its finished result from ``workdir/SIDE/result.json.gz``.

    Each side stores its result as soon as it is done, so a failure of the other side (or of the evaluation)
    does not throw away a finished 50-minute training run; the bench started again continues with what is missing.
    """
    path = Path(job["workdir"]) / side / "result.json.gz"
    key = {k: job.get(k, RESULT_DEFAULTS.get(k)) for k in (*RESULT_KEYS, *SIDE_KEYS[side])}
    if path.exists():
        with gzip.open(path, "rt") as fh:
            stored = json.load(fh)
        if stored["job"] == key:
            print(f"{side}: reusing the finished run in {path.parent}", flush=True)
            return {**stored["result"], "reused_from": str(path.parent)}
        print(f"{side}: {path} is from a different job; training again", flush=True)
    result = run_transip(job) if side == "transip" else run_mace(job)
    from transip_md.atomic_io import atomic_write

    with atomic_write(path) as tmp, gzip.open(tmp, "wt") as fh:
        json.dump({"job": key, "result": result}, fh)
    return result


def evaluate(frames, held, preds) -> dict:
    from transip_md.train.metrics import (
        error_sums,
        metrics_from_sums,
        per_element_force_metrics,
        per_state_metrics,
    )
    from transip_md.train.vertical import vertical_gaps

    return {
        "overall": metrics_from_sums(error_sums(frames, preds)),
        "per_state": per_state_metrics(frames, preds),
        "per_element": per_element_force_metrics(frames, preds),
        "vertical": vertical_gaps(frames, preds, held),
    }


def element_table(evals: dict) -> list[str]:
    """Markdown rows of the held-out force MAE by element, one column per model (reports since 2026-12-04)."""
    models = [m for m, ev in evals.items() if "per_element" in ev]
    if not models:
        return []
    elements = list(evals[models[0]]["per_element"])
    lines = [
        "| element | atoms | " + " | ".join(f"{m} F MAE meV/Å" for m in models) + " | zero-force MAE meV/Å |",
        "|---|---|" + "---|" * (len(models) + 1),
    ]
    for el in elements:
        first = evals[models[0]]["per_element"][el]
        cells = " | ".join(f"{evals[m]['per_element'][el]['force_mae_meV_per_A']:.1f}" for m in models)
        lines.append(f"| {el} | {first['atoms']} | {cells} | {first['zero_force_mae_meV_per_A']:.1f} |")
    return lines


def transip_predictions(model_path: str, frames, held) -> dict:
    from transip_md.model import load_compiled
    from transip_md.train.data import TopologyCache
    from transip_md.train.metrics import predict_frames

    model = load_compiled(model_path)
    return predict_frames(model.module, frames, held, TopologyCache(frames, model.cutoff), 512)


def plot_curves(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, res in results.items():
        t = [p["time_s"] / 60 for p in res["curve"]]
        y = [p["val_force_mae_meV_per_A"] for p in res["curve"]]
        ax.plot(t, y, marker="o", label=name)
    ax.set_xlabel("wall time (min, 1 thread)")
    ax.set_ylabel("validation force MAE (meV/Å)")
    ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_report(meta: dict, evals: dict, results: dict, prefix: Path) -> None:
    prefix.with_suffix(".json").write_text(json.dumps({"meta": meta, "evaluation": evals, "curves": {
        k: v["curve"] for k, v in results.items()}}, indent=1))  # fmt: skip
    lines = [
        "# TransIP vs MACE: equal data, equal wall-clock budget, held-out molecules",
        "",
        f"Command: `{meta['command']}`",
        "",
        f"{meta['train_frames']} training frames, {meta['val_frames']} validation frames (early stopping), "
        f"{meta['held_frames']} held-out frames of {meta['held_molecules']} molecules; budget "
        f"{meta['budget_s'] / 60:.0f} min each, 1 thread each"
        + (". " if meta.get("reused") else ", run side by side. ")
        + "".join(
            f"{name}'s result was not trained by this command: it is read back from `{where}` (trained beside "
            "another run, possibly on another day, so the two sides here did not share the machine's load). "
            for name, where in meta.get("reused", {}).items()
        )
        + (
            "MACE gets mace-torch's total-charge and multiplicity embeddings."
            if meta.get("mace_charge_spin")
            else "MACE has no charge/spin input."
        )
        + (
            f" Force term of both sides: smooth L1 (beta {meta['force_loss_beta']} eV/Å)"
            if meta.get("force_loss") == "smooth_l1"
            else " Force term of both sides: squared error"
        )
        + f"; force weight MACE {side_force_weight(meta, 'mace'):g}, TransIP "
        f"{meta.get('transip_force_weight', side_force_weight(meta, 'transip')):g}; energy weight (on (eV/atom)^2) "
        f"MACE 1, TransIP {meta.get('transip_energy_weight', 1.0):g}.",
        "",
        "| model | state | frames | E MAE meV/atom | F MAE meV/Å |",
        "|---|---|---|---|---|",
    ]
    for name, ev in evals.items():
        rows = [("all", ev["overall"])] + list(ev["per_state"].items())
        for state, m in rows:
            lines.append(
                f"| {name} | {state} | {m['frames']} | {m['energy_mae_meV_per_atom']:.1f} | "
                f"{m['force_mae_meV_per_A']:.1f} |"
            )
    lines += ["", "| model | vertical gap | geometries | MAE eV | mean-predictor MAE eV |", "|---|---|---|---|---|"]
    for name, ev in evals.items():
        for gap, m in ev["vertical"].items():
            lines.append(
                f"| {name} | {gap} | {m['geometries']} | {m['mae_eV']:.3f} | {m['mean_predictor_mae_eV']:.3f} |"
            )
    by_element = element_table(evals)
    if by_element:
        lines += ["", "Held-out forces by element:", "", *by_element]
    lines += ["", f"Learning curves: `{prefix.with_suffix('.png').name}`."]
    prefix.with_suffix(".md").write_text("\n".join(lines) + "\n")


def _run_seed(meta: dict) -> int:
    """The seed of a stored report (older reports name it only in the TransIP command)."""
    if "seed" in meta:
        return int(meta["seed"])
    words = meta["transip_command"].split()
    return int(words[words.index("--seed") + 1])


def _transip_recipe(meta: dict) -> list[str]:
    """The TransIP command without what differs between seeds (interpreter, data path, output, seeds)."""
    words = meta["transip_command"].split()
    words = words[words.index("train") + 1 :]
    out, skip = [], False
    for w in words:
        if skip:
            skip = False
            continue
        if w in ("--data", "-o", "--seed"):
            skip = True
            continue
        if w.startswith("split_seed="):
            out.pop()  # its "--set"
            continue
        out.append(w)
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def _mean_table(
    reports: list[tuple[str, dict]],
    models: list[str],
    row_name: str,
    column: str,
    rows: list[str],
    fmt: str,
    value: Callable[[dict, str], float],
) -> list[str]:
    """Markdown rows: one per entry of ``rows``, one column per model, each cell the mean of
    ``value(evaluation_of_model, row)`` over the (path, report) pairs in ``reports``."""
    lines = [f"| {row_name} | " + " | ".join(f"{m} {column}" for m in models) + " |", "|---|" + "---|" * len(models)]
    for row in rows:
        cells = [_mean_std([value(rep["evaluation"][m], row) for _, rep in reports])[0] for m in models]
        lines.append(f"| {row} | " + " | ".join(format(c, fmt) for c in cells) + " |")
    return lines


def _read_back_note(meta: dict) -> str:
    """'; MACE read back from `runs/x/mace`' for a report whose side(s) were not trained beside the other, else ''."""
    return "".join(f"; {name} read back from `{where}`" for name, where in meta.get("reused", {}).items())


def summarize_reports(paths: list[str]) -> str:
    """A Markdown summary of several reports of one setting (one per seed): mean and spread of each model's
    held-out errors and of the paired TransIP - MACE force difference. Reports of different settings are refused."""
    reports = []
    for path in paths:
        with open(path) as fh:
            reports.append((path, json.load(fh)))
    ref_path, ref = reports[0]
    for path, rep in reports[1:]:
        for key in SUMMARY_KEYS:
            if rep["meta"].get(key) != ref["meta"].get(key):
                raise SystemExit(
                    f"{path}: {key} = {rep['meta'].get(key)!r}, but {ref_path} has {ref['meta'].get(key)!r}; "
                    "only runs of one setting (differing in seed) can be summarised together"
                )
        if _transip_recipe(rep["meta"]) != _transip_recipe(ref["meta"]):
            raise SystemExit(f"{path}: its TransIP recipe differs from {ref_path}'s (beyond seed and paths)")
    seeds = [_run_seed(rep["meta"]) for _, rep in reports]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"two reports have the same seed ({seeds}); each seed once")
    models = list(ref["evaluation"])
    lines = [
        "# TransIP vs MACE over seeds: equal data, equal wall-clock budget, held-out molecules",
        "",
        f"{len(reports)} runs of one setting (each a pair trained side by side unless marked, one thread each, "
        f"{ref['meta']['budget_s'] / 60:.0f} min; the seed sets both sides' initialisation, batch order and "
        f"train/validation split; the {ref['meta']['held_frames']} held-out frames of "
        f"{ref['meta']['held_molecules']} molecules are the same in every run): "
        + ", ".join(
            f"`{Path(path).name}` (seed {s}{_read_back_note(rep['meta'])})"
            for (path, rep), s in zip(reports, seeds, strict=True)
        )
        + ".",
        "",
        "| model | held-out F MAE meV/Å, by seed | mean ± sd | E MAE meV/atom, by seed | mean ± sd |",
        "|---|---|---|---|---|",
    ]
    for name in models:
        f = [rep["evaluation"][name]["overall"]["force_mae_meV_per_A"] for _, rep in reports]
        e = [rep["evaluation"][name]["overall"]["energy_mae_meV_per_atom"] for _, rep in reports]
        fm, fs = _mean_std(f)
        em, es = _mean_std(e)
        lines.append(
            f"| {name} | {' / '.join(f'{v:.1f}' for v in f)} | {fm:.1f} ± {fs:.1f} | "
            f"{' / '.join(f'{v:.1f}' for v in e)} | {em:.1f} ± {es:.1f} |"
        )
    if set(models) >= {"TransIP", "MACE"}:
        rel = [
            100.0
            * (rep["evaluation"]["TransIP"]["overall"]["force_mae_meV_per_A"]
               / rep["evaluation"]["MACE"]["overall"]["force_mae_meV_per_A"] - 1.0)
            for _, rep in reports
        ]  # fmt: skip
        rm, rs = _mean_std(rel)
        se = rs / np.sqrt(len(rel)) if len(rel) > 1 else float("nan")
        t_mean, m_mean = (
            _mean_std([rep["evaluation"][m]["overall"]["force_mae_meV_per_A"] for _, rep in reports])[0]
            for m in ("TransIP", "MACE")
        )
        verdict = "at or below" if round(t_mean, 1) <= round(m_mean, 1) else "above"
        lines += [
            "",
            f"Paired force difference, TransIP relative to MACE (same seed): "
            f"{' / '.join(f'{v:+.1f} %' for v in rel)}; mean {rm:+.1f} % (standard error {se:.1f} %). "
            f"TransIP's mean held-out force MAE ({t_mean:.1f} meV/Å) is {verdict} MACE's ({m_mean:.1f}).",
        ]
    states = list(ref["evaluation"][models[0]]["per_state"])
    lines += ["", *_mean_table(reports, models, "state", "F MAE (mean)", states, ".1f",
                               lambda ev, s: ev["per_state"][s]["force_mae_meV_per_A"])]  # fmt: skip
    with_elements = [(path, rep) for path, rep in reports if "per_element" in rep["evaluation"][models[0]]]
    if with_elements:
        elements = list(with_elements[0][1]["evaluation"][models[0]]["per_element"])
        lines += [
            "",
            f"By element, mean over the {len(with_elements)} report(s) that break forces down by element ("
            + ", ".join(f"`{Path(path).name}`" for path, _ in with_elements)
            + "):",
            "",
            *_mean_table(with_elements, models, "element", "F MAE meV/Å (mean)", elements, ".1f",
                         lambda ev, el: ev["per_element"][el]["force_mae_meV_per_A"]),
        ]  # fmt: skip
    gaps = list(ref["evaluation"][models[0]]["vertical"])
    lines += ["", *_mean_table(reports, models, "vertical gap", "MAE eV (mean)", gaps, ".3f",
                               lambda ev, g: ev["vertical"][g]["mae_eV"])]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None, help="data set with a held-out split (default: the shipped set)")
    p.add_argument("--budget-min", type=float, default=20.0)
    p.add_argument("--train-frames", type=int, default=None, help="evenly spread subset of the training side")
    p.add_argument("--val-frames", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--transip-args",
        default="--equivariance augment --cutoff 5.0 --d-model 64 --layers 2 --heads 4 --set model.n_rope_freqs=2 "
        "--set model.n_rbf=64 --set model.rbf_max=10.0 --max-atoms 128 --lr 3e-3 --warmup-steps 50 --epochs 100",
    )
    p.add_argument(
        "--mace-eval-every", type=float, default=600.0, help="seconds between MACE validations (inside its budget)"
    )
    p.add_argument(
        "--mace-charge-spin",
        action="store_true",
        help="give MACE mace-torch's total-charge and multiplicity embeddings (default: none, as published)",
    )
    p.add_argument(
        "--force-loss",
        choices=("mse", "smooth_l1"),
        default="mse",
        help="force term of BOTH sides: squared error, or smooth L1 with --force-loss-beta eV/Å at half the force "
        "weight (TransIP 1 -> 0.5, MACE 10 -> 5)",
    )
    p.add_argument("--force-loss-beta", type=float, default=0.05, help="smooth L1 threshold, eV/Å")
    p.add_argument(
        "--transip-from-run",
        metavar="DIR",
        help="train no TransIP: read back this finished `transip-md train` run, whose config.json must be the one "
        "this bench's TransIP command makes (output folder aside)",
    )
    p.add_argument(
        "--mace-from-report",
        metavar="JSON",
        help="train no MACE: take its held-out evaluation and learning curve from this earlier report of the same "
        "data, seed, budget and MACE settings (for runs whose MACE predictions were not kept)",
    )
    p.add_argument("--workdir", default="runs/accuracy_vs_mace")
    p.add_argument("--output", default="bench/results/accuracy_vs_mace")
    p.add_argument(
        "--summarize",
        nargs="+",
        metavar="JSON",
        help="train nothing: write OUTPUT.md summarising these reports of one setting (one per seed)",
    )
    args = p.parse_args(argv)
    if args.summarize:
        text = summarize_reports(args.summarize)
        Path(args.output).with_suffix(".md").write_text(text)
        print(text)
        return 0

    path, frames, train, val, held = load_split(args.data, args.train_frames, args.val_frames, args.seed)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    job = {
        "data": args.data, "train_frames": args.train_frames, "val_frames": args.val_frames, "seed": args.seed,
        "budget_s": 60.0 * args.budget_min, "workdir": str(work), "transip_args": args.transip_args,
        "data_path": path, "mace_eval_every_s": args.mace_eval_every,
        "mace_charge_spin": args.mace_charge_spin, "force_loss": args.force_loss,
        "force_loss_beta": args.force_loss_beta,
    }  # fmt: skip
    meta = {
        "command": "python bench/accuracy_vs_mace.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "data": path,
        "seed": args.seed,
        "train_frames": len(train),
        "val_frames": len(val),
        "held_frames": len(held),
        "held_molecules": len({str(frames[i].mol_id) for i in held}),
        "budget_s": job["budget_s"],
        "mace_charge_spin": args.mace_charge_spin,
        "force_loss": args.force_loss,
        "force_loss_beta": args.force_loss_beta,
    }
    transip_config = command_config(transip_command(job))
    meta.update(
        transip_force_weight=transip_config["force_weight"], transip_energy_weight=transip_config["energy_weight"]
    )
    results: dict[str, dict] = {}
    evals: dict[str, dict] = {}
    if args.transip_from_run:
        results["TransIP"] = transip_from_run(job, args.transip_from_run, transip_config)
    if args.mace_from_report:
        results["MACE"], evals["MACE"] = mace_from_report(args.mace_from_report, meta)
    to_train = [(name, side) for name, side in (("TransIP", "transip"), ("MACE", "mace")) if name not in results]
    if to_train:
        from transip_md.worker_pool import spawn_pool

        with spawn_pool(len(to_train)) as pool:
            pending = {name: pool.apply_async(side_result, (job, side)) for name, side in to_train}
            while not all(r.ready() for r in pending.values()):
                for r in pending.values():  # a side that failed (e.g. mace-torch missing) stops the bench at once
                    if r.ready() and not r.successful():
                        r.get()
                time.sleep(5.0)
            results.update({name: r.get() for name, r in pending.items()})
    results = {name: results[name] for name in ("TransIP", "MACE")}
    evals["TransIP"] = evaluate(frames, held, transip_predictions(results["TransIP"]["model"], frames, held))
    if "MACE" not in evals:
        preds = {int(i): (e, np.asarray(f)) for i, (e, f) in results["MACE"]["preds"].items()}
        evals["MACE"] = evaluate(frames, held, preds)
    evals = {name: evals[name] for name in ("TransIP", "MACE")}
    meta.update(
        transip_command=results["TransIP"]["command"],
        transip_model=results["TransIP"]["model"],
        # sides not trained by this command but read back from a stored result or report (maybe trained on
        # another day, beside another run): the report says so, since "side by side" then holds only for the
        # original pair
        reused={name: r["reused_from"] for name, r in results.items() if "reused_from" in r},
    )
    prefix = Path(args.output)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    write_report(meta, evals, results, prefix)
    plot_curves(results, prefix.with_suffix(".png"))
    print(prefix.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
