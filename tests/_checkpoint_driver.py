"""A driver with a journal and checkpoints, for the kill-and-resume test:
``python -m tests._checkpoint_driver RUN``.

Model 1 hangs in training after step 2 (its checkpoint of step 2 saved), model 3 is
paused at step 3, model 4 stopped at step 2, models 2 and 5 train to their end. Once
all that is committed to the run file it prints ``ready``, and waits to be killed.
"""

from __future__ import annotations

import sys

import anyio

import engine as e
from engine import Engine, InlinePool, ModelHandle
from tests._checkpoint_fixtures import climb_sync, space

PAUSE, STOP = 3, 4  # the model ids paused and stopped


def decide(handle: ModelHandle, step: int, _: float) -> None:
    if handle.model_id == PAUSE and step == 3:
        handle.pause()
    if handle.model_id == STOP and step == 2:
        handle.stop()


async def main(run: str) -> None:
    async with Engine(InlinePool(2), journal=run) as engine:
        events = engine.subscribe()
        engine.listen(decide)
        await engine.submit(space(climb_sync, hang_at=2).freeze({"x": 1}))
        second = await engine.submit(space(climb_sync).freeze({"x": 2}))
        await engine.submit(space(climb_sync).freeze({"x": 3}))
        stopped = await engine.submit(space(climb_sync).freeze({"x": 4}))
        seen: set[tuple[int, str]] = set()
        async for event in events:
            if isinstance(event, e.events.MetricReported) and event.model_id == 1:
                seen.add((1, f"step {event.step}"))
            if isinstance(event, e.events.ModelPaused):
                seen.add((event.model_id, "paused"))
            if {(1, "step 2"), (PAUSE, "paused")} <= seen:
                break
        await second
        await stopped
        # Committed after every event before it: the run file now holds all of the above.
        await (await engine.submit(space(climb_sync).freeze({"x": 5})))
        print("ready", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1])
