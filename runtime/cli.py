"""The `shoal` command: start, stop and inspect a cluster on this machine.

shoal start --head [--port P] [--num-cpus N] [--num-gpus N] [--resources JSON] [--object-store-memory BYTES] [--block]
shoal start --address HEAD:PORT [--token-file FILE|-] [...same options]   (or SHOAL_TOKEN in the environment)
shoal status
shoal list nodes|workers|tasks|actors|objects|jobs|placement-groups [--filter KEY=VALUE] [--limit N]
shoal summary tasks|actors|objects
shoal stop
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import stat
import sys
import time

_TOKEN_ON_COMMAND_LINE = (
    "--token is not accepted: a token on the command line is visible to every user of this machine "
    "(ps, /proc/<pid>/cmdline) for as long as the node runs. Pass it in the environment "
    "(SHOAL_TOKEN=$(cat FILE) shoal start ...), as --token-file FILE (mode 0600) or on stdin (--token-file -)."
)


def _read_token_file(path: str) -> str:
    """The token in `path` (`-`: stdin). Raises ValueError with what to do if it cannot be used."""
    if path == "-":
        token = sys.stdin.readline().strip()
        if not token:
            raise ValueError("--token-file -: no token on stdin")
        return token
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise ValueError(f"--token-file {path}: {exc.strerror}") from None
    with os.fdopen(descriptor) as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if stat.S_ISREG(mode) and mode & 0o077:
            raise ValueError(
                f"--token-file {path} can be read by other users (mode {stat.S_IMODE(mode):04o}): "
                f"run chmod 600 {path} first"
            )
        token = handle.read().strip()
    if not token:
        raise ValueError(f"--token-file {path} is empty")
    return token


def _start(args: argparse.Namespace) -> int:
    from ._core import auth, config, lifecycle, node_launcher

    if args.token is not None:
        print(_TOKEN_ON_COMMAND_LINE, file=sys.stderr)
        return 2
    running = node_launcher.read_address()
    if running is not None and not args.address:
        print(f"A shoal cluster is already running on this machine (node manager pid {running.pid}).", file=sys.stderr)
        print("Stop it first with: shoal stop", file=sys.stderr)
        return 1
    resources = {}
    if args.resources:
        try:
            resources = json.loads(args.resources)
        except ValueError as exc:
            print(f"--resources must be a JSON object, e.g. '{{\"big_mem\": 1}}': {exc}", file=sys.stderr)
            return 2
        if not isinstance(resources, dict):
            print("--resources must be a JSON object of name to amount", file=sys.stderr)
            return 2
    token = None
    if args.address:
        if args.head:
            print("--head starts a new cluster and --address joins one: pass only one of them", file=sys.stderr)
            return 2
        host, _, port = args.address.rpartition(":")
        if not host or not port.isdigit():
            print(f"--address must be HOST:PORT of the head, got {args.address!r}", file=sys.stderr)
            return 2
        if args.token_file is not None:
            try:
                token = _read_token_file(args.token_file)
            except ValueError as exc:
                print(str(exc), file=sys.stderr)
                return 2
        else:
            token = config.cluster_token()
        if token is None and running is not None and running.tcp_address and running.tcp_address.endswith(":" + port):
            token = running.token  # the head runs on this machine: its token is in our session dir
        if token is None:
            print(
                f"Joining {args.address} needs the cluster's token: pass --token-file with a copy of the token "
                "file the head printed, or set SHOAL_TOKEN.",
                file=sys.stderr,
            )
            return 2
    stop = {"requested": False}
    if args.block:
        # Installed before anything is printed: a supervisor may signal as soon as it reads.
        def on_signal(signum, frame):
            stop["requested"] = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
    bind_host = args.bind or args.node_ip_address or "127.0.0.1"
    node_ip = args.node_ip_address or "127.0.0.1"
    store_bytes = args.object_store_memory or config.default_object_store_bytes()
    total = node_launcher.node_resources(
        args.num_cpus, args.num_gpus, resources, store_bytes, node_ip, head=not args.address
    )
    try:
        node = node_launcher.start_node(
            total,
            store_bytes,
            None,
            node_ip=node_ip,
            embedded=args.block,
            tcp_port=args.port,
            bind_host=bind_host,
            head_address=args.address,
            token=token,
        )
    except (RuntimeError, TimeoutError) as exc:
        print(str(exc).strip(), file=sys.stderr)
        return 1
    if args.address:
        node_launcher.write_member(node)
        print(f"Joined the shoal cluster at {args.address} (node manager pid {node.pid}).")
        print(f"  this node listens on: {node.tcp_address}")
    else:
        node_launcher.write_address(node)
        print(f"Started a shoal head node (node manager pid {node.pid}).")
        print(f"  address: {node.endpoint}")
    print(f"  session: {node.session_dir}")
    print("Connect from Python on this machine with:  shoal.init(address='auto')")
    if node.tcp_address and not args.address:
        token_file = os.path.join(node.session_dir, auth.TOKEN_FILE)
        print(f"  TCP address: {node.tcp_address} (only clients holding the token can connect)")
        print(f"  token file: {token_file} (readable by you only; copy it to each machine that joins)")
        print("To add a node from another machine, with the token file copied there:")
        print(f"  shoal start --address {node.tcp_address} --token-file {token_file}")
        print(
            f"From another machine:  SHOAL_TOKEN=$(cat {token_file}) python -c "
            f"\"import shoal; shoal.init(address='{node.tcp_address}')\""
        )
    print("Stop it with:  shoal stop")
    sys.stdout.flush()
    if not args.block:
        return 0

    assert node.process is not None  # start_node's HeadProcess holds the child it started
    kept = None
    try:
        while not stop["requested"] and lifecycle.pid_alive(node.pid) and node.process.poll() is None:
            time.sleep(0.1)
    finally:
        kept = node_launcher.stop_node(node)
        if args.address:
            node_launcher.clear_member(node)
        else:
            node_launcher.clear_address()
    if kept:
        print(f"The node manager (pid {node.pid}) died on its own; its logs are in {kept}", file=sys.stderr)
        return 1
    return 0


def _stop(args: argparse.Namespace) -> int:
    from ._core import lifecycle, node_launcher

    members = node_launcher.read_members()
    for member in members:
        node_launcher.stop_node(member)
        node_launcher.clear_member(member)
        print(f"Stopped the shoal node with node manager pid {member.pid}.")
    running = node_launcher.read_address()
    if running is not None:
        node_launcher.stop_node(running)
        print(f"Stopped the shoal cluster (node manager pid {running.pid}).")
    elif not members:
        print("No shoal cluster is running on this machine.")
    node_launcher.clear_address()
    stale = lifecycle.collect_stale_sessions()
    if stale:
        print(f"Removed {len(stale)} session directories of nodes that were killed: {', '.join(stale)}")
    return 0


def _status(args: argparse.Namespace) -> int:
    import shoal

    try:
        shoal.init(address="auto")
    except ConnectionError as exc:
        from ._core import node_launcher

        print(str(exc), file=sys.stderr)
        crashed = node_launcher.crashed_head()
        if crashed is not None:
            print(f"The last shoal head on this machine (node manager pid {crashed[0]}) died without", file=sys.stderr)
            print(f"stopping; its logs are in {crashed[1]}", file=sys.stderr)
        return 1
    try:
        total = shoal.cluster_resources()
        available = shoal.available_resources()
        nodes = shoal.nodes()
        print(f"shoal cluster: {len(nodes)} node(s)")
        for node in nodes:
            print(f"  node {node['NodeID'][:12]}  {node['NodeManagerAddress']}  {'alive' if node['Alive'] else 'dead'}")
        print("Resources (used / total):")
        for name in sorted(total):
            if name.startswith("node:"):
                continue
            used = total[name] - available.get(name, 0.0)
            if name in ("memory", "object_store_memory"):
                print(f"  {name}: {used / 2**20:,.1f} / {total[name] / 2**20:,.1f} MiB")
            else:
                print(f"  {name}: {used:g} / {total[name]:g}")
        from .util import state

        counts: dict = {}
        for entry in state.summarize_tasks()["cluster"]["summary"].values():
            for task_state, count in entry["state_counts"].items():
                counts[task_state] = counts.get(task_state, 0) + count
        print("Tasks by state: " + (", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"))
        actors = state.summarize_actors()["cluster"]["total_actors"]
        print(f"Actors: {actors}")
        for row in state.list_nodes():
            dropped, errors, refused = row["messages_dropped"], row["handler_errors"], row["connections_refused"]
            if dropped or errors or refused:
                print(
                    f"Node {row['node_id'][:12]} dropped {dropped} malformed or unexpected message(s), survived "
                    f"{errors} handler error(s) and refused {refused} connection(s); see its node_manager.log"
                )
    finally:
        shoal.shutdown()
    return 0


_LIST_COLUMNS = {
    "nodes": ["node_id", "node_ip", "state", "num_workers", "object_store_used_bytes"],
    "workers": ["worker_id", "pid", "state", "actor_id", "assigned_tasks"],
    "tasks": ["task_id", "name", "state", "type", "worker_pid", "error_type"],
    "actors": ["actor_id", "class_name", "name", "state", "pid", "num_restarts"],
    "objects": ["object_id", "object_size", "location", "reference_type", "ref_count"],
    "jobs": ["job_id", "driver_pid", "namespace", "status"],
    "placement-groups": ["placement_group_id", "name", "state", "strategy"],
}


def _connect_or_report() -> bool:
    import shoal

    try:
        shoal.init(address="auto")
    except ConnectionError as exc:
        print(str(exc), file=sys.stderr)
        return False
    return True


def _print_table(rows: list, columns: list) -> None:
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        print("  ".join(value.ljust(w) for value, w in zip(row, widths)))


def _list(args: argparse.Namespace) -> int:
    import shoal

    from .util import state

    filters = []
    for text in args.filter or []:
        key, sep, value = text.partition("!=") if "!=" in text else text.partition("=")
        if not sep:
            print(f"--filter takes KEY=VALUE or KEY!=VALUE, got {text!r}", file=sys.stderr)
            return 2
        filters.append((key.strip(), sep, value.strip()))
    if not _connect_or_report():
        return 1
    try:
        lister = getattr(state, "list_" + args.kind.replace("-", "_"))
        try:
            rows = lister(filters=filters, limit=args.limit)
        except ValueError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        _print_table(rows, _LIST_COLUMNS[args.kind])
        print(f"\n{len(rows)} {args.kind}")
    finally:
        shoal.shutdown()
    return 0


def _summary(args: argparse.Namespace) -> int:
    import shoal

    from .util import state

    if not _connect_or_report():
        return 1
    try:
        result = getattr(state, "summarize_" + args.kind)()["cluster"]
        for name, entry in sorted(result["summary"].items()):
            counts = entry.get("state_counts", entry)
            print(f"{name}: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
        total = {k: v for k, v in result.items() if k.startswith("total")}
        print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in total.items()))
    finally:
        shoal.shutdown()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shoal", description="Start, stop and inspect a shoal cluster.")
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start a shoal node on this machine")
    start.add_argument("--head", action="store_true", help="start the head node of a new cluster")
    start.add_argument("--num-cpus", type=float, default=None)
    start.add_argument("--num-gpus", type=int, default=None)
    start.add_argument("--resources", default=None, help="custom resources as JSON, e.g. '{\"big_mem\": 1}'")
    start.add_argument("--object-store-memory", type=int, default=None, help="object store size in bytes")
    start.add_argument("--block", action="store_true", help="stay in the foreground; Ctrl-C stops the node")
    start.add_argument("--port", type=int, default=None, help="also listen on this TCP port (token-authenticated)")
    start.add_argument("--node-ip-address", default=None, help="this node's address (TCP binds to it)")
    start.add_argument("--bind", default=None, help="address the TCP port binds to (default 127.0.0.1)")
    start.add_argument("--address", default=None, help="join the cluster whose head is at HOST:PORT")
    start.add_argument(
        "--token-file", default=None, help="file holding the cluster token (mode 0600; '-' reads stdin), or SHOAL_TOKEN"
    )
    start.add_argument("--token", default=None, help=argparse.SUPPRESS)  # refused: argv is public
    start.set_defaults(run=_start)
    stop = commands.add_parser("stop", help="stop the shoal cluster running on this machine")
    stop.set_defaults(run=_stop)
    status = commands.add_parser("status", help="show nodes and resource use")
    status.set_defaults(run=_status)
    lister = commands.add_parser("list", help="list nodes, workers, tasks, actors, objects, jobs")
    lister.add_argument("kind", choices=sorted(_LIST_COLUMNS))
    lister.add_argument("--filter", action="append", help="KEY=VALUE or KEY!=VALUE (repeatable)")
    lister.add_argument("--limit", type=int, default=100)
    lister.set_defaults(run=_list)
    summary = commands.add_parser("summary", help="counts of tasks, actors or objects by state")
    summary.add_argument("kind", choices=["tasks", "actors", "objects"])
    summary.set_defaults(run=_summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
