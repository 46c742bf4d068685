"""kopf_fixes: kopf's "everything indexed" toggle set wakes its waiters when its answer
changes, not at every toggle made or dropped (which made an operator start quadratic in
the objects listed)."""

from __future__ import annotations

import asyncio

from kopf._cogs.aiokits import aiotoggles

from kubetune_operator import kopf_fixes


def test_waiters_wake_once_when_the_last_toggle_goes_not_at_every_toggle():
    assert kopf_fixes.install()
    assert kopf_fixes.install()  # idempotent

    async def scenario(n: int) -> tuple[int, int]:
        indexed = aiotoggles.ToggleSet(all)
        blocker = await indexed.make_toggle(name="blocker")
        checks = 0  # how often a waiter re-checked the set: one per wake-up
        is_on = indexed.is_on

        def counted() -> bool:
            nonlocal checks
            checks += 1
            return is_on()

        indexed.is_on = counted  # type: ignore[method-assign]
        # As kopf's queueing does per object during a listing: a toggle per object, then
        # (after indexing it) the object's worker drops it, twice, and waits for the set.
        toggles = [await indexed.make_toggle(name=f"object {i}") for i in range(n)]
        done = 0

        async def worker(toggle: aiotoggles.Toggle) -> None:
            nonlocal done
            await indexed.drop_toggle(toggle)
            await indexed.drop_toggle(toggle)  # kopf drops it again after each event
            await indexed.wait_for(True)
            done += 1

        tasks = []
        for t in toggles:  # objects come one after another off the watch stream
            tasks.append(asyncio.create_task(worker(t)))
            for _ in range(3):  # the ones before are back waiting when the next comes
                await asyncio.sleep(0)
        await asyncio.sleep(0.1)
        assert done == 0  # still blocked: the blocker is on the set
        await indexed.drop_toggle(blocker)
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        return done, checks

    done, checks = asyncio.run(scenario(300))
    assert done == 300
    # kopf's own: each of ~600 make/drop calls wakes every waiter (~45,000 checks for 300).
    # Fixed: each worker checks on entering and once on the one wake-up, plus the setters'.
    assert checks < 10 * 300, checks
