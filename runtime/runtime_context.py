"""get_runtime_context(): ids and resources of the current driver, task or actor."""

from __future__ import annotations

from ._core import task_context
from ._core.placement_groups import original_resources


class RuntimeContext:
    """What is running here: job, node, worker, task and actor ids, and assigned resources."""

    def get_job_id(self) -> str:
        """The id of the driver's job, in hex; the same in the driver and in every task and actor
        it starts, directly or through other tasks."""
        job_id = task_context.current_job_id()
        return job_id.hex() if job_id else ""

    def get_node_id(self) -> str:
        node_id = task_context.process.node_id
        return node_id.hex() if node_id else ""

    def get_worker_id(self) -> str:
        worker_id = task_context.process.worker_id
        return worker_id.hex() if worker_id else ""

    def get_task_id(self) -> str | None:
        spec = task_context.current_spec()
        return spec.task_id.hex() if spec is not None else None

    def get_task_name(self) -> str | None:
        spec = task_context.current_spec()
        return (spec.name or spec.function_name) if spec is not None else None

    def get_task_function_name(self) -> str | None:
        spec = task_context.current_spec()
        return spec.function_name if spec is not None else None

    def get_actor_id(self) -> str | None:
        actor_id = task_context.process.actor_id
        return actor_id.hex() if actor_id else None

    def get_actor_name(self) -> str | None:
        return getattr(task_context.process, "actor_name", None)

    def get_assigned_resources(self) -> dict:
        """The resources reserved for this worker, as floats by name: a task's request ({"CPU": 1.0}
        by default), or what an actor holds for its life ({} by default), in its constructor and
        in every method. Placement-group bundle names read as the plain names (`CPU`)."""
        held = task_context.process.actor_resources
        if held is None:
            spec = task_context.current_spec()
            if spec is None:
                return {}
            held = spec.resources
        return original_resources(held)

    def get_accelerator_ids(self) -> dict:
        return {"GPU": [str(i) for i in task_context.current_gpu_ids()]}

    @property
    def namespace(self) -> str | None:
        return task_context.process.namespace

    def get_namespace(self) -> str | None:
        return self.namespace

    @property
    def was_current_actor_reconstructed(self) -> bool:
        return bool(getattr(task_context.process, "actor_restarted", False))

    @property
    def current_actor(self):
        return getattr(task_context.process, "actor_handle", None)

    @property
    def worker_mode(self) -> str:
        return task_context.process.mode

    def get(self) -> dict:
        return {
            "job_id": self.get_job_id(),
            "node_id": self.get_node_id(),
            "namespace": self.namespace,
            "task_id": self.get_task_id(),
            "actor_id": self.get_actor_id(),
        }


def get_runtime_context() -> RuntimeContext:
    return RuntimeContext()
