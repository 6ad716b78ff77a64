"""The local engine: what happens between calling a task or a flow and its final state.

Each lifecycle is written once, as steps, and driven by calling (sync) or awaiting (async):

- ``effects``: the step protocol and its two drivers, ``run_sync`` and ``run_async``;
- ``attempts``: one attempt of a task run, hooks, the run log helpers (shared with the task pods);
- ``retries``: after a failed attempt (retry_condition_fn, the verdict, the log line), the loop;
- ``caching``: cache keys, the cache store, lock -> lookup -> commit;
- ``inputs``: upstream futures into values (NotReady when one did not complete);
- ``task_engine``: a task run from Pending to final, for direct calls and task runners;
- ``generators``: directly called generator tasks, advanced as the caller iterates;
- ``flow_engine``: a flow run (attempts, retries, hooks);
- ``options``: the options of ``@task`` / ``@flow``, their defaults and checks;
- ``transitions``: the state that follows a retry decision;
- ``runs``: the run records of ``flowpod.context.runs``, by the name the pods import them.

What the engine knows of tasks, flows and runners is ``flowpod.context.views``: it never imports
``flowpod.tasks``, ``flowpod.flows`` or ``flowpod.task_runners``, which sit above it.
"""
