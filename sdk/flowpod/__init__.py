"""flowpod: Prefect's @task/@flow API, run in-process or as Kubernetes pods."""
