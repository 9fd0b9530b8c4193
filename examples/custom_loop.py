"""A custom reasoning loop: vote in growing rounds until the answers agree (simulated engine)."""

from algorithms import Context, GenerateRequest, Program, chat_prompt
from certaindex import cluster_answers, extract_answer, majority_vote, normalized_entropy
from dynasor import AllocatorConfig, Query, Runtime, StopRule
from dynasor.clock import run
from dynasor.engine import SimBackend, SyntheticSource


class GrowingVote(Program):
    def __init__(self) -> None:
        self.answers: list[str | None] = []

    async def run(self, ctx: Context) -> None:
        for size in (2, 4, 8):  # each round is one gang, twice the last
            sample = GenerateRequest(chat_prompt(ctx.query), max_tokens=2048)
            self.answers += [extract_answer(c.text) for c in await ctx.gather([sample] * size)]
            ctx.report(normalized_entropy(cluster_answers(self.answers)))  # the allocator may stop us here

    def answer(self) -> str | None:
        labels = cluster_answers(self.answers)
        leader = majority_vote(labels)
        return None if leader is None else self.answers[labels.index(leader)]


async def main() -> None:
    rules = AllocatorConfig({"growing": StopRule("entropy", 0.7)})
    runtime = Runtime(SimBackend("h100-llama3-8b", SyntheticSource(seed=0)), allocator=rules)
    for i in range(3):
        r = await runtime.run(Query(f"Question {i}?", "growing", id=f"q{i}"), GrowingVote())
        print(f"{r.id}: answer={r.answer} samples={r.samples} exit={r.exit_reason} (simulated)")
    await runtime.aclose()


if __name__ == "__main__":
    run(main())  # in virtual time: seconds of simulated serving take milliseconds
