"""``ftatlas data synth``: instruction/response rows from seed rows with a teacher model or endpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ftatlas.cli.common import USER_ERRORS, fail, group, out

data_app = group("data", "Inspect, validate and prepare data files.")


@data_app.command("synth")
def data_synth(
    seeds: Annotated[str, typer.Argument(help="seed rows (any data file; .txt paragraphs = documents)")],
    teacher: Annotated[str, typer.Option(help="http(s)://host:port of an OpenAI-compatible server, or a model "
                                              "(alias, dir, .gguf, run dir)")],
    output: Annotated[Path, typer.Option("--out", help="output .jsonl (messages rows with provenance)")]
    = Path("synth.jsonl"),
    report: Annotated[Path | None, typer.Option("--report", help="JSON report (default: OUT.report.json)")] = None,
    mode: Annotated[str, typer.Option(help="auto, self-instruct, evol-instruct or documents")] = "auto",
    n: Annotated[int, typer.Option("--n", help="rows to generate (before de-duplication and filters)")] = 16,
    k: Annotated[int, typer.Option("--k", help="seed examples shown per self-instruct request")] = 3,
    teacher_model: Annotated[str, typer.Option(help="model name sent to an endpoint")] = "default",
    api_key_env: Annotated[str, typer.Option(help="environment variable holding the endpoint's API key")]
    = "OPENAI_API_KEY",
    max_new_tokens: Annotated[int, typer.Option(help="tokens per answer")] = 256,
    temperature: Annotated[float, typer.Option(help="sampling temperature for new instructions")] = 0.8,
    seed: Annotated[int, typer.Option(help="seed for seed picking and sampling")] = 0,
    dedup_threshold: Annotated[float, typer.Option(help="near-duplicate threshold against seeds and each other")]
    = 0.7,
    refusals: Annotated[bool, typer.Option("--refusals", help="drop answers with refusal phrases")] = False,
    min_words: Annotated[int | None, typer.Option(help="drop rows with fewer words")] = None,
    min_reward: Annotated[float | None, typer.Option(help="drop rows whose answer scores below this")] = None,
    reward: Annotated[list[str] | None, typer.Option("--reward", help="reward for --min-reward; repeatable")]
    = None,
    reward_model: Annotated[str | None, typer.Option(help="reward model run dir for --min-reward")] = None,
    min_judge: Annotated[float | None, typer.Option(help="drop rows the judge rates below this (1-10)")] = None,
    judge: Annotated[str | None, typer.Option(help="judge for --min-judge (URL or model; default: the teacher)")]
    = None,
    format: Annotated[str, typer.Option(help="seed file format")] = "auto",
) -> None:
    """Generate new instructions (self-instruct, evol-instruct or questions about documents) and their answers
    with a teacher; drop duplicates of the seeds and filtered answers, and report every dropped row."""
    from ftatlas.data.filters import FilterSpec
    from ftatlas.data.rejection import parse_reward
    from ftatlas.data.synth import synthesize
    from ftatlas.data.teachers import TeacherError, make_teacher
    from ftatlas.recipe import DecodeSpec
    from ftatlas.rewards import RewardError, RewardSpec

    checks: dict = {}
    if refusals:
        checks["refusal"] = (None, 0.0)
    if min_words is not None:
        checks["words"] = (min_words, None)
    if min_reward is not None:
        checks["reward"] = (min_reward, None)
    if min_judge is not None:
        checks["judge"] = (min_judge, None)
    try:
        rewards = [parse_reward(r) for r in reward or []]
        if reward_model:
            rewards.append(RewardSpec(name="reward_model", path=reward_model))
        teach = make_teacher(teacher, model=teacher_model, api_key_env=api_key_env)
        filters = FilterSpec(checks, rewards=rewards, judge=judge, judge_model=teacher_model,
                             judge_teacher=None if judge else teach)
        instruct = DecodeSpec(max_new_tokens=96, do_sample=True, temperature=temperature, seed=seed)
        answer = DecodeSpec(max_new_tokens=max_new_tokens, seed=seed)
        rep = synthesize(seeds, teach, output,
                         report=report, mode=mode, n=n, k=k, seed=seed, format=format, instruct_decode=instruct,
                         answer_decode=answer, filters=filters, dedup_threshold=dedup_threshold)  # type: ignore[arg-type]
    except (*USER_ERRORS, RewardError, TeacherError) as e:
        fail(e)
    out.print(f"{rep['mode']} with {rep['teacher']}: {rep['requested']} generated, {rep['kept']} kept, "
              f"{rep['removed']} dropped in {rep['seconds']} s", highlight=False)
    reasons: dict[str, int] = {}
    for d in rep["dropped"]:
        key = d["reason"].split(" of ")[0].split(" ")[0] if "duplicate" in d["reason"] else d["reason"].split(" ")[0]
        reasons[key] = reasons.get(key, 0) + 1
    if reasons:
        out.print("dropped: " + ", ".join(f"{k} {v}" for k, v in reasons.items()), highlight=False)
    out.print(f"wrote {rep['output']} and {rep['report']}", highlight=False)
