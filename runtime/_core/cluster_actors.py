"""Actors across nodes: placing them on other nodes, routing calls, restarting them elsewhere.

A mixin of NodeManagerService. The node whose client created an actor owns it (the actor id
starts with that node's tag) and keeps its record: name, restarts left, and where it runs.
When the actor should run elsewhere (a resource only another node has, a strategy, or no
room here), the owner sends the creation to the chosen node, which hosts it like a local
actor and reports its state changes back. A node with a call for an actor it does not host
asks the owner where the actor runs (once; the owner also tells it when the actor moves or
dies) and forwards the calls there, in order, so one caller's calls still run in the order
it made them. If the hosting node dies, the owner restarts the actor on another node when
it has restarts left; calls in flight are retried (max_task_retries) or fail.
"""

from __future__ import annotations

import dataclasses
import logging

from . import protocol
from .node_host import NodeHost
from .scheduling import fits, to_shape

logger = logging.getLogger(__name__)


class ClusterActors(NodeHost):
    def _init_cluster_actors(self) -> None:
        self.actor_nodes: dict[bytes, bytes] = {}  # actors owned elsewhere -> the node running them
        self.actor_deaths: dict[bytes, protocol.ObjectValue] = {}  # actors owned elsewhere, dead
        self.actor_waiting: dict[bytes, list] = {}  # calls waiting to learn where their actor runs
        self.name_lookups: dict[int, tuple] = {}  # request id -> (client id, its request id)
        self._lookup_ids = 0
        self._peer_handlers.update(
            {
                protocol.ForwardActor: self._on_forward_actor,
                protocol.LocateActors: self._on_locate_actors,
                protocol.ActorLocation: self._on_actor_location,
                protocol.KillActor: lambda node, message: self._kill_actor(message),
                protocol.GetActor: self._on_peer_get_actor,
                protocol.ActorReply: self._on_peer_actor_reply,
                protocol.RegisterActorName: self._on_register_actor_name,
            }
        )
        self.remote_names: dict[tuple, tuple] = {}  # head: (namespace, name) -> (actor id, handle meta)

    # -- placement (the owner) ------------------------------------------------------------

    def place_actor_elsewhere(self, record) -> bool:
        """Before reserving here: send the actor to another node if it should run there."""
        if len(self.cluster.nodes) < 2 or record.origin is not None:
            return False
        shape = to_shape(record.spec.placement)
        target = self.cluster.choose(shape, record.spec.creation.strategy, fits(self.scheduler.available, shape))
        if not isinstance(target, bytes):  # LOCAL (None) or False: not a peer's node id
            return False
        record.node = target
        record.state = "STARTING"
        self.cluster.take(target, shape)
        self._send_function(target, record.spec.creation.function_id)
        self._send_peer(target, protocol.ForwardActor(record.spec, record.restarts_left, record.num_restarts))
        self.actor_changed(record)
        return True

    def _send_function(self, node_id: bytes, function_id: bytes) -> None:
        sent = self.peer_functions.setdefault(node_id, set())
        if function_id and function_id not in sent:
            sent.add(function_id)
            self._send_peer(node_id, protocol.ForwardTasks([], {function_id: self.functions.get(function_id, b"")}))

    def actor_changed(self, record) -> None:
        """Tell whoever needs to know that an actor started, moved, restarted or died."""
        spec = record.spec
        dead = record.state == "DEAD"
        if record.origin is not None:
            if self.cluster.is_alive(record.origin):
                self._send_peer(
                    record.origin,
                    protocol.ActorLocation(
                        spec.actor_id,
                        b"" if dead else self.node_id,
                        record.state,
                        record.num_restarts,
                        record.death_value if dead else None,
                    ),
                )
            return
        if record.state == "PENDING_CREATION":
            return  # callers hear again once it is placed
        host = b"" if dead else (record.node or self.node_id)
        for node in list(record.watchers):
            if self.cluster.is_alive(node):
                self._send_peer(
                    node,
                    protocol.ActorLocation(
                        spec.actor_id, host, record.state, record.num_restarts, record.death_value if dead else None
                    ),
                )

    # -- hosting (the chosen node) --------------------------------------------------------

    def _on_forward_actor(self, node_id: bytes, message: protocol.ForwardActor) -> None:
        existing = self.actors.actors.get(message.spec.actor_id)
        if existing is not None and existing.state != "DEAD":
            return
        self.actors.admit(
            message.spec, restarts_left=message.restarts_left, num_restarts=message.num_restarts, origin=node_id
        )

    # -- callers --------------------------------------------------------------------------

    def route_actor_call(self, record) -> bool:
        """Send a method call to the node running its actor; False: the actor is handled here."""
        actor_id = record.spec.actor_id
        local = self.actors.actors.get(actor_id)
        if local is not None:
            if local.node is None or local.state == "DEAD":
                return False
            self._forward(record, local.node)
            return True
        if record.origin is not None or len(self.cluster.nodes) < 2:
            return False
        death = self.actor_deaths.get(actor_id)
        if death is not None:
            self._finish_with_values(
                record, [death] * record.spec.num_returns, copy_from_error=True, error_type="ACTOR_DIED"
            )
            return True
        node = self.actor_nodes.get(actor_id)
        if node is not None and self.cluster.is_alive(node) and actor_id not in self.actor_waiting:
            if node == self.node_id:
                return False
            self._forward(record, node)
            return True
        owner = self.owner_node(actor_id)
        if owner is None:
            return False
        record.state = "WAITING"
        waiting = self.actor_waiting.setdefault(actor_id, [])
        waiting.append(record.spec.task_id)
        if len(waiting) == 1:
            if not self.cluster.is_alive(owner):
                self._actor_gone(
                    actor_id,
                    self.make_error_value(
                        "actor_died",
                        record.spec,
                        {
                            "message": f"The actor's owner (node {owner.hex()}) died, and the actor with it.",
                            "actor_id": actor_id.hex(),
                        },
                    ),
                )
            else:
                self._send_peer(owner, protocol.LocateActors([actor_id]))
        return True

    def _on_locate_actors(self, node_id: bytes, message: protocol.LocateActors) -> None:
        for actor_id in message.actor_ids:
            record = self.actors.actors.get(actor_id)
            if record is None:
                error = self.make_error_value(
                    "actor_died",
                    None,
                    {
                        "message": "The actor does not exist in this cluster.",
                        "actor_id": actor_id.hex(),
                    },
                )
                self._send_peer(node_id, protocol.ActorLocation(actor_id, b"", "DEAD", 0, error))
                continue
            record.watchers.add(node_id)
            if record.state == "DEAD":
                self._send_peer(
                    node_id, protocol.ActorLocation(actor_id, b"", "DEAD", record.num_restarts, record.death_value)
                )
            elif record.state != "PENDING_CREATION":
                host = record.node or self.node_id
                self._send_peer(node_id, protocol.ActorLocation(actor_id, host, record.state, record.num_restarts))

    def _on_actor_location(self, node_id: bytes, message: protocol.ActorLocation) -> None:
        actor_id = message.actor_id
        record = self.actors.actors.get(actor_id)
        if record is not None and record.origin is None:
            # The node hosting an actor we own reports on it.
            if record.node != node_id or record.state == "DEAD":
                return
            record.num_restarts = message.num_restarts
            if message.state == "DEAD":
                record.death_value = message.death
                record.no_restart = True
                self.actors.mark_dead(record, None)
            else:
                record.state = message.state
                self.actor_changed(record)
            return
        if message.node_id:
            self.actor_nodes[actor_id] = bytes(message.node_id)
            self.actor_deaths.pop(actor_id, None)
            waiting = self.actor_waiting.pop(actor_id, [])
            for task_id in waiting:
                call = self.tasks.get(task_id)
                if call is not None and call.state != "DONE" and not self.route_actor_call(call):
                    self._queue_here(call)
        else:
            self._actor_gone(actor_id, message.death)

    def _actor_gone(self, actor_id: bytes, death) -> None:
        self.actor_nodes.pop(actor_id, None)
        self.actor_deaths[actor_id] = death
        for task_id in self.actor_waiting.pop(actor_id, []):
            call = self.tasks.get(task_id)
            if call is not None and call.state != "DONE":
                self._finish_with_values(
                    call, [death] * call.spec.num_returns, copy_from_error=True, error_type="ACTOR_DIED"
                )

    def actor_call_lost(self, record, node_id: bytes) -> None:
        """The node running this call died: retry it where the actor comes back, or fail it."""
        actor_id = record.spec.actor_id
        if self.actor_nodes.get(actor_id) == node_id:
            del self.actor_nodes[actor_id]
        record.node = None
        allowed = record.retries_left
        if record.cancelled or allowed == 0:
            self._finish_with_error(
                record,
                "actor_unavailable",
                {
                    "message": f"The node running this actor call ({node_id.hex()}) died before it finished; "
                    "calls are retried only with max_task_retries.",
                    "actor_id": actor_id.hex(),
                },
            )
            return
        if allowed > 0:
            record.retries_left -= 1
        record.spec = dataclasses.replace(record.spec, attempt=record.spec.attempt + 1)
        record.state = "WAITING"
        if not self.route_actor_call(record):
            self._queue_here(record)

    # -- kill and names -------------------------------------------------------------------

    def _kill_actor(self, message: protocol.KillActor) -> None:
        actor_id = message.actor_id
        if actor_id in self.actors.actors:
            self.actors.kill(actor_id, message.no_restart)
            return
        target = self.owner_node(actor_id)
        if target is not None and self.cluster.is_alive(target):
            self._send_peer(target, message)

    def forward_kill(self, record, no_restart: bool) -> None:
        """The owner kills an actor hosted on another node."""
        if self.cluster.is_alive(record.node):
            self._send_peer(record.node, protocol.KillActor(record.spec.actor_id, no_restart))

    def announce_name(self, spec, alive: bool) -> None:
        """Named actors owned by other nodes are registered with the head, for lookups."""
        head = self.cluster_head_id()
        if self.is_head or head is None or not self.cluster.is_alive(head):
            return
        self._send_peer(
            head,
            protocol.RegisterActorName(
                spec.namespace, spec.name, spec.actor_id if alive else None, spec.handle_meta if alive else None
            ),
        )

    def _on_register_actor_name(self, node_id: bytes, message: protocol.RegisterActorName) -> None:
        key = (message.namespace, message.name)
        if message.actor_id is not None:
            self.remote_names[key] = (message.actor_id, message.handle_meta)
        elif key in self.remote_names:
            del self.remote_names[key]

    def lookup_name_at_head(self, client_id: bytes, message: protocol.GetActor) -> bool:
        """A name this node does not know: ask the head (it knows every node's named actors)."""
        if self.is_head:
            found = self.remote_names.get((message.namespace, message.name))
            if found is None:
                return False
            self._send(client_id, protocol.ActorReply(message.request_id, found[0], found[1], None))
            return True
        head = self.cluster_head_id()
        if head is None or not self.cluster.is_alive(head):
            return False
        self._lookup_ids += 1
        self.name_lookups[self._lookup_ids] = (client_id, message.request_id)
        self._send_peer(head, protocol.GetActor(self._lookup_ids, message.name, message.namespace))
        return True

    def _on_peer_get_actor(self, node_id: bytes, message: protocol.GetActor) -> None:
        actor_id = self.actors.named.get((message.namespace, message.name))
        record = self.actors.actors.get(actor_id) if actor_id is not None else None
        if record is not None and record.state != "DEAD":
            self._send_peer(node_id, protocol.ActorReply(message.request_id, actor_id, record.spec.handle_meta, None))
            return
        found = self.remote_names.get((message.namespace, message.name))
        if found is not None:
            self._send_peer(node_id, protocol.ActorReply(message.request_id, found[0], found[1], None))
        else:
            self._send_peer(node_id, protocol.ActorReply(message.request_id, None, None, "missing"))

    def _on_peer_actor_reply(self, node_id: bytes, message: protocol.ActorReply) -> None:
        asker = self.name_lookups.pop(message.request_id, None)
        if asker is not None and asker[0] in self.clients:
            self._send(asker[0], dataclasses.replace(message, request_id=asker[1]))
