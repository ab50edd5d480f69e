"""Entry point of a node process: fork the worker template first, then run the node manager.

Forking before the node manager imports ZeroMQ lets the template warm up in parallel with the
node manager's own start, and keeps the template free of any ZeroMQ state.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    options = json.loads(sys.stdin.read())
    from . import lifecycle, template

    template_options = {
        "node_manager_pid": os.getpid(),
        "endpoint": f"ipc://{lifecycle.node_socket_path(options['session_dir'])}",
        "session_dir": options["session_dir"],
        "node_id": options["node_id"],
        "node_ip": options.get("node_ip", "127.0.0.1"),
        "env_vars": options.get("env_vars") or {},
    }
    handle = template.TemplateHandle.fork(
        template_options, os.path.join(options["session_dir"], "logs", "template.log")
    )
    # The node's own sockets, logs and spill files are for this user alone; the workers (and a
    # template started again later) keep the user's umask for the files tasks write.
    template_options["user_umask"] = os.umask(0o077)
    from . import node_manager

    profile_dir = os.environ.get("SHOAL_PROFILE_DIR")
    if not profile_dir:
        node_manager.main(options, handle, template_options)
        return
    import cProfile

    profiler = cProfile.Profile()
    try:
        profiler.runcall(node_manager.main, options, handle, template_options)
    finally:
        profiler.dump_stats(os.path.join(profile_dir, f"node_manager-{os.getpid()}.prof"))


if __name__ == "__main__":
    main()
