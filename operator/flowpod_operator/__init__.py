"""flowpod's Kubernetes operator: runs TaskRuns as pods (kopf).

Layers, each importing only the ones before it:

- ``settings``: the operator's configuration (default image, storage, credentials Secret name,
  namespaces), from the environment and the command line;
- ``pods``: pure pod manifests (deterministic names, labels, owner references);
- ``decisions``: pure state machine - observed TaskRun, pod, outcome and cache record in,
  actions out (imports neither kopf nor the Kubernetes client);
- ``store``: the two result-store reads the operator makes (outcome, cache record);
- ``kube``: the only module that talks to the Kubernetes API;
- ``handlers``: kopf wiring (event handlers for TaskRuns and their pods, the retry scheduler);
- ``__main__``: the ``flowpod-operator`` command.
"""
