"""flowpod's Kubernetes operator: runs TaskRuns and FlowRuns as pods (kopf).

Layers, each importing only the ones before it:

- ``settings``: the operator's configuration (default image, storage, credentials Secret name,
  namespaces), from the environment and the command line;
- ``pods``: pure pod manifests (deterministic names, labels, owner references);
- ``decisions`` / ``decisions_flowrun``: pure state machines - observed run, pod, outcome (and
  cache record) in, actions out (import neither kopf nor the Kubernetes client);
- ``store``: the two result-store reads the operator makes (outcome, cache record);
- ``kube``: the only module that talks to the Kubernetes API;
- ``reconciling``: the loop both controllers share (per-object lock, timers, error backoff);
- ``flowruns``: the FlowRun controller (flow pods, task-run counts, cancel, TTL);
- ``handlers``: the TaskRun controller and the kopf wiring (event handlers for runs and pods);
- ``__main__``: the ``flowpod-operator`` command.
"""
