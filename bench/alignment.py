"""Alignment objectives on SmolLM2-135M, CPU: does each one move the number it exists to move?

One function per part, registered in PARTS; each returns table rows (objective, steps, wall time, metric,
before, after). Run all parts or some:

    python bench/alignment.py                    # every part
    python bench/alignment.py --parts dpo,reward

- ``dpo``: SFT (LoRA, merged) then DPO (LoRA) on the built-in contacts pairs. Metric: held-out preference
  accuracy = share of pairs whose DPO implicit reward margin, beta*[(log pi - log ref)(chosen) -
  (log pi - log ref)(rejected)], is > 0 (ties count half; before DPO the policy is its reference, so every
  margin is 0 and the accuracy is 50% by definition). Also reported: the share of pairs where the model
  itself gives chosen the higher log-probability, and generation json_match.
- ``reward``: a reward model (LoRA + score head) on the same pairs. Metric: held-out pairwise accuracy
  (score(chosen) > score(rejected)), untrained head before, trained after.

Other parts (grpo, ...) register with ``@part("name")`` and return rows of the same shape.
Writes bench/results/alignment.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
N_EVAL = 100  # held-out pairs / prompts

Row = dict  # {"part", "objective", "steps", "wall_s", "metric", "before", "after", "note"}
PARTS: dict[str, Callable[[argparse.Namespace, Path], list[Row]]] = {}


def part(name: str) -> Callable:
    def deco(fn: Callable[[argparse.Namespace, Path], list[Row]]) -> Callable:
        PARTS[name] = fn
        return fn

    return deco


def _recipe(example: str, out: Path, name: str, *overrides: str):
    from ftatlas.resolve import load_recipe

    return load_recipe(ROOT / "examples" / example, [f"output.dir={out}", f"output.name={name}",
                                                       "output.overwrite=true", *overrides])


def _share(values: list[float]) -> float:
    """Share of values > 0, ties (exactly 0) counted half."""
    return sum(1.0 if v > 0 else 0.5 if v == 0 else 0.0 for v in values) / len(values)


def _logp_preference(model, tokenizer, pairs) -> float:
    from ftatlas.objectives.dpo import answer_logps

    chosen = answer_logps(model, tokenizer, pairs, "chosen")
    rejected = answer_logps(model, tokenizer, pairs, "rejected")
    return _share([c - r for c, r in zip(chosen, rejected, strict=True)])


@part("dpo")
def part_dpo(args: argparse.Namespace, out: Path) -> list[Row]:
    from ftatlas.data.builtin import contact_pairs
    from ftatlas.export.merge import merge_run
    from ftatlas.models.trained import load_run_or_model
    from ftatlas.objectives.dpo import implicit_reward_margins
    from ftatlas.pipeline import train

    pairs = contact_pairs("eval")[:N_EVAL]
    t0 = time.perf_counter()
    sft = train(_recipe("quickstart.yaml", out, "sft", f"train.max_steps={args.sft_steps}", "train.epochs=1",
                        f"eval.max_examples={N_EVAL}"), progress=False)
    merged = merge_run(sft.run.path).out_dir
    sft_s = time.perf_counter() - t0
    sft_model = load_run_or_model(merged)[0]
    logp_before = _logp_preference(sft_model.model, sft_model.tokenizer, pairs)
    del sft_model
    t1 = time.perf_counter()
    dpo = train(_recipe("dpo.yaml", out, "dpo", f"model.name={merged}", f"train.max_steps={args.dpo_steps}",
                        f"eval.max_examples={N_EVAL}"), progress=False)
    dpo_s = time.perf_counter() - t1
    policy = load_run_or_model(str(dpo.run.path))[0]
    beta = dpo.recipe.objective_params().beta
    margins = implicit_reward_margins(policy.model, policy.tokenizer, pairs, beta)
    logp_after = _logp_preference(policy.model, policy.tokenizer, pairs)
    json_before = sft.results["after"]["metrics"]["json_match"]
    json_after = dpo.results["after"]["metrics"]["json_match"]
    note = f"SFT {args.sft_steps} steps ({sft_s:.0f} s incl. merge) first; beta={beta}, n={len(pairs)} held-out"
    base = {"part": "a", "objective": "sft -> dpo (lora)", "steps": args.dpo_steps, "wall_s": round(dpo_s)}
    return [
        {**base, "metric": "preference accuracy (implicit reward margin > 0)", "before": 0.5,
         "after": _share(margins), "note": note + "; before: policy = reference, all margins 0"},
        {**base, "metric": "log p(chosen) > log p(rejected)", "before": logp_before, "after": logp_after,
         "note": "the model's own ranking, no reference"},
        {**base, "metric": "generation json_match", "before": json_before, "after": json_after,
         "note": "greedy answers to the held-out prompts"},
    ]


@part("reward")
def part_reward(args: argparse.Namespace, out: Path) -> list[Row]:
    from ftatlas.pipeline import train

    t0 = time.perf_counter()
    s = train(_recipe("reward.yaml", out, "reward", f"train.max_steps={args.reward_steps}",
                      f"eval.max_examples={N_EVAL}"), progress=False, eval_before=True)
    wall = time.perf_counter() - t0
    return [{"part": "c", "objective": "reward (lora + score head)", "steps": args.reward_steps, "wall_s": round(wall),
             "metric": "held-out pairwise accuracy", "before": s.results["before"]["metrics"]["pairwise_accuracy"],
             "after": s.results["after"]["metrics"]["pairwise_accuracy"],
             "note": f"n={s.results['after']['n']}; before = untrained score head"}]


def _online(args: argparse.Namespace, out: Path, objective: str, part_id: str) -> list[Row]:
    """An online objective on the verifiable ``ages`` task from examples/<objective>.yaml: mean training reward
    over the first vs the last 10% of steps, and greedy held-out exact_match before vs after."""
    from ftatlas.pipeline import train

    steps = args.online_steps
    s = train(_recipe(f"{objective}.yaml", out, objective, f"train.max_steps={steps}", "train.log_every=1",
                      f"eval.max_examples={N_EVAL}"), progress=False, eval_before=True)
    rewards = [r["reward"] for r in s.run.read_metrics() if "reward" in r]
    tenth = max(1, len(rewards) // 10)
    kls = [r["kl"] for r in s.run.read_metrics() if r.get("kl") is not None]
    p = s.recipe.objective_params()
    top = sum(r.weight for r in p.rewards)
    base = {"part": part_id, "objective": f"{objective} ({s.recipe.method.name})", "steps": len(rewards),
            "wall_s": round(s.results["fit"].stats.seconds)}
    before, after = s.results["before"]["metrics"], s.results["after"]["metrics"]
    return [
        {**base, "metric": f"mean training reward, first vs last {tenth} steps (max {top:g})", "raw": True,
         "before": sum(rewards[:tenth]) / tenth, "after": sum(rewards[-tenth:]) / tenth,
         "note": f"{p.num_generations} samples x {s.recipe.train.batch_size} prompts per step, "
                 f"T={p.temperature}, beta={p.beta}; KL at the end {kls[-1] if kls else 0:.3f}"},
        {**base, "metric": "held-out exact_match (greedy)", "before": before["exact_match"],
         "after": after["exact_match"], "note": f"n={s.results['after']['n']}; contains: "
                                                f"{100 * before['contains']:.0f}% -> {100 * after['contains']:.0f}%"},
    ]


@part("grpo")
def part_grpo(args: argparse.Namespace, out: Path) -> list[Row]:
    return _online(args, out, "grpo", "b")


@part("rloo")
def part_rloo(args: argparse.Namespace, out: Path) -> list[Row]:
    return _online(args, out, "rloo", "b2")


@part("ppo")
def part_ppo(args: argparse.Namespace, out: Path) -> list[Row]:
    return _online(args, out, "ppo", "b3")


def _cell(r: Row, key: str) -> str:
    return f"{r[key]:.3f}" if r.get("raw") else f"{100 * r[key]:.0f}%"


def markdown(rows: list[Row]) -> str:
    lines = ["| part | objective | steps | wall time | metric | before | after | note |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['part']} | {r['objective']} | | | failed: {r['error'][:100]} | | | |")
            continue
        lines.append(f"| {r['part']} | {r['objective']} | {r['steps']} | {r['wall_s']} s | {r['metric']} | "
                     f"{_cell(r, 'before')} | {_cell(r, 'after')} | {r['note']} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from: {', '.join(PARTS)}")
    ap.add_argument("--sft-steps", type=int, default=20)
    ap.add_argument("--dpo-steps", type=int, default=40)
    ap.add_argument("--reward-steps", type=int, default=60)
    ap.add_argument("--online-steps", type=int, default=60, help="steps of grpo / rloo / ppo")
    ap.add_argument("--out", default=None, help="where run dirs go (default: a temp dir)")
    args = ap.parse_args()
    names = [p for p in args.parts.split(",") if p]
    unknown = [p for p in names if p not in PARTS]
    if unknown:
        sys.exit(f"unknown parts {unknown}; known: {', '.join(PARTS)}")
    out = Path(args.out or tempfile.mkdtemp(prefix="ftatlas-alignment-"))
    rows: list[Row] = []
    for name in names:
        rows += PARTS[name](args, out)
        print(markdown(rows), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    old = json.loads((RESULTS / "alignment.json").read_text()) if (RESULTS / "alignment.json").is_file() else []
    rows = [r for r in old if r["part"] not in {r2["part"] for r2 in rows}] + rows  # keep other parts' rows
    rows.sort(key=lambda r: r["part"])
    (RESULTS / "alignment.json").write_text(json.dumps(rows, indent=2) + "\n")
    (RESULTS / "alignment.md").write_text(markdown(rows) + "\n")
    print(markdown(rows))


if __name__ == "__main__":
    main()
