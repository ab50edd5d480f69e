"""shoal's private engine. Nothing here is public API; `shoal` re-exports what users need.

Which file runs in which process, by layer (imports point down only; tests/unit/test_layering.py
checks it):

    services     (own sockets, threads or processes)
      node process   node_main -> template (forks workers first), then node_manager with its
                     parts: message_intake (every frame checked before a handler), worker_pool,
                     task_dispatch, task_completion, task_cancel, actor_manager,
                     object_handlers, object_transfer, cluster_peers, cluster_actors,
                     group_placement, control_store (node_host: what those parts may use of
                     the service, for the type checker); port_guard (connections before
                     authentication), worker_watch (pidfds of its workers); node_launcher
                     starts it
      every client   client (the one connection to the node manager), session (the process's
                     client, ids, namespace, front-end hooks), feasibility, handshake_watch
                     (why a TCP handshake failed)
      worker         worker (runs tasks in order), actor_host (async/threaded actors)
    mechanisms   serialization, serializability (what in a value cannot be pickled),
                 shared_arena, arena_store (node side of the store), local_objects and
                 object_io (client side), auth, lifecycle, system_errors, fault_log
                 (rate-limited fault lines and counts), driver_logs (a terminal driver's
                 printing of worker output)
    pure state   scheduling, cluster_table, object_directory, arena_allocator,
                 placement_groups, state_view, task_record, message_schema, connection_gate,
                 tcp_frames, pull_window: events in, decisions out, no I/O
    leaves       protocol (typed messages and the codec), ids, config (every SHOAL_* setting),
                 task_args, task_context, frame_names

    driver / worker process                 node process                   worker processes
    +---------------------+   ipc / tcp     +--------------------------+   fork   +--------+
    | api -> session ->   | --------------> | node_manager (+ parts)   | <------  | worker |
    |        client       |   (protocol)    | scheduling, object_dir.. |  template|        |
    +---------------------+                 | arena_store  <-- memfd --+--------> +--------+
"""
