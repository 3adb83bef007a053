"""Lost actors and lost nodes on the Ray runtime: which actors are gone, and re-creating them, with bounded waits.

``RayBackend`` takes these methods from ``LossHandling``; ``Guard`` (``recovery.py``)
calls them when a message fails with one of ``failures``. A killed actor, a killed
node and a node cut off longer than Ray's health checks allow all end the same way:
the GCS declares the actor (or its node) dead and every call to it fails with
``RayActorError`` (``ObjectLostError`` for results held on a lost node). Before that,
calls to a cut-off node just wait: Ray's node-death timeout bounds that wait (the GCS
health checks, ``RAY_health_check_*``; ``emulated.HEALTH_CHECK`` on the rig).

``revive`` re-creates the lost actors in their placement-group bundles: Ray moves the
bundles of a dead node to a node with room (a surviving one, or the node restarted,
for bundles pinned to ``node_<k>``). It waits at most ``revive_timeout_s``
(``placement.timeout_s``) for the new actors to start; if they cannot (no node has room
for them) it raises ``ReviveError``, naming the lost node(s), the actors and why, and
``Guard`` adds the last checkpoint. ``close`` then skips those stranded actors.
"""
from __future__ import annotations

import logging
import os
import time

import ray

from distspike.runtime.ray_placement import alive_nodes, where_actors
from distspike.runtime.recovery import RecoveryError

log = logging.getLogger("distspike.recovery")


class ReviveError(RecoveryError):
    """Lost actors could not be re-created in time (no node has room for them); names node, actors and why."""


def wait_all(refs: dict[str, ray.ObjectRef], timeout_s: float) -> tuple[list[str], list[str]]:
    """``(failed, pending)`` names after waiting at most ``timeout_s`` in all for every ref."""
    by_ref = {ref: name for name, ref in refs.items()}
    ready, pending = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=timeout_s, fetch_local=True)
    failed = []
    for ref in ready:
        try:
            ray.get(ref, timeout=0)
        except Exception:  # noqa: BLE001 - any failure of a ping means the actor is not there
            failed.append(by_ref[ref])
    return failed, [by_ref[r] for r in pending]


class LossHandling:
    """Detecting lost actors and re-creating them (mixed into ``RayBackend``: ``actors``, ``factory``,
    ``drop_graph``)."""

    #: exceptions meaning an actor (or the node, or objects it held) was lost
    failures = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError, ray.exceptions.NodeDiedError)
    #: seconds all actors together may take to answer a ping after a loss before the silent ones count as lost
    ping_timeout_s = 60.0
    #: seconds re-created actors may take to start (``placement.timeout_s``) before ``ReviveError``
    revive_timeout_s = 60.0

    def remember_nodes(self) -> None:
        """Record the node address of every actor (for naming a lost node later).

        Also silences Ray's "Unhandled error" echoes from the start: the backend fetches every
        call's result, so an error in a dropped result is an echo of a loss (or failure) that is
        handled and reported once. Set only at the first loss, the echoes of results dropped
        before it still printed, depending on timing.
        """
        os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
        self.nodes = {name: w["node"] for name, w in where_actors(self.actors).items()}
        self.stranded: set[str] = set()

    def lost_actor(self, err: BaseException) -> str:
        """The name of the actor ``err`` reports lost, else of the actors that do not answer."""
        actor_id = getattr(err, "actor_id", None)
        for name, a in self.actors.items():
            if actor_id and a._actor_id.hex() == actor_id:
                return name
        return ", ".join(self.unanswered()) or "unknown"

    def explains_loss(self, err: BaseException) -> bool:
        """A failed task (e.g. a message rejected as out of order), or a closed channel of the compiled
        graph, while some actor is lost."""
        echoes = (ray.exceptions.RayTaskError, ray.exceptions.RayChannelError)
        return isinstance(err, echoes) and bool(self.unanswered())

    def unanswered(self) -> list[str]:
        """Actors that are dead or do not answer a ping within ``ping_timeout_s`` in all (after their queue)."""
        failed, pending = wait_all({n: a.ping.remote() for n, a in self.actors.items()}, self.ping_timeout_s)
        lost = set(failed) | set(pending)
        return [n for n in self.actors if n in lost]

    def revive(self) -> list[str]:
        """Re-create every actor that is dead or does not answer and wait (bounded) until they run; their names.

        A new actor can fail at once (its bundle was still on a node not yet declared
        dead): it is created again until ``revive_timeout_s`` is spent.
        """
        self.drop_graph()
        lost = self.unanswered()
        t0, todo = time.monotonic(), list(lost)
        while todo:
            for name in todo:
                ray.kill(self.actors[name], no_restart=True)
                self.actors[name] = self.factory.spawn(name)
            left = self.revive_timeout_s - (time.monotonic() - t0)
            failed, pending = wait_all({n: self.actors[n].ping.remote() for n in todo}, max(left, 0.0))
            if pending or (failed and time.monotonic() - t0 >= self.revive_timeout_s):
                self.stranded = set(failed) | set(pending)
                raise ReviveError(self.stranded_line(lost, [n for n in lost if n in self.stranded]))
            todo = failed
            time.sleep(0.5 if todo else 0.0)
        self.stranded = set()
        moved = where_actors({n: self.actors[n] for n in lost})
        log.warning("re-created %s in %.2f s: %s", ", ".join(lost) or "no actor", time.monotonic() - t0,
                    "; ".join(f"{n} on {moved[n]['node']} (was {self.nodes.get(n, '?')})" for n in lost))
        self.nodes.update({n: moved[n]["node"] for n in lost})
        return lost

    def stranded_line(self, lost: list[str], stranded: list[str]) -> str:
        """One line: which node was lost, which actors could not be re-created, and why."""
        alive = alive_nodes()
        was = sorted({self.nodes.get(n, "?") for n in lost})
        state = ", ".join(f"node {ip} {'lost' if ip not in alive else 'alive'}" for ip in was)
        return (f"{state}: actor(s) {', '.join(stranded)} could not be re-created within "
                f"{self.revive_timeout_s:g} s (placement.timeout_s): {self.why_no_room(stranded[0], alive)}")

    def why_no_room(self, name: str, alive: dict[str, dict]) -> str:
        """Why actor ``name``'s bundle fits no alive node."""
        bundle = self.factory.bundles[self.factory.index[name]]
        missing = sorted(k for k in bundle if not any(k in res for res in alive.values()))
        if missing:
            return f"no alive node offers {', '.join(missing)} (its bundle {bundle})"
        return f"no alive node has room for its bundle {bundle} ({len(alive)} node(s) alive)"
