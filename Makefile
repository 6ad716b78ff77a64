# Shortcuts for flowpod's everyday commands; `make` alone lists them.
#
# image, kind-load (which builds the image first) need a running Docker engine; kind-cluster,
# kind-load and kind-delete need kind (and kind needs Docker). demo, test and crds need neither:
# they run in the project's .venv (scripts/demo and scripts/test create it when it is missing).
#
#   make image IMAGE=my-flows:1 EXTRA_REQUIREMENTS="pandas==2.2.3 requests"
#   make kind-cluster kind-load            # then install the chart with image=$(IMAGE)
#
# Without Docker, the project's own one-node cluster does the same on Debian 12 (root, Go):
#   scripts/cluster up; scripts/cluster image --tag $(IMAGE) --load   # see docs/testing.md

IMAGE ?= flowpod:dev
KIND_CLUSTER ?= flowpod
# Space-separated pip requirement specs installed into the image's venv (see the Dockerfile).
EXTRA_REQUIREMENTS ?=

.DEFAULT_GOAL := help
.PHONY: help image kind-cluster kind-load kind-delete demo test crds

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  %-14s %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)
	@echo "Variables: IMAGE=$(IMAGE) KIND_CLUSTER=$(KIND_CLUSTER) EXTRA_REQUIREMENTS=\"$(EXTRA_REQUIREMENTS)\""

image: ## Build the image IMAGE, with EXTRA_REQUIREMENTS in its venv (Docker)
	docker build -t $(IMAGE) --build-arg EXTRA_REQUIREMENTS="$(EXTRA_REQUIREMENTS)" .

kind-cluster: ## Create the kind cluster KIND_CLUSTER from kind-config.yaml (kind, Docker)
	kind create cluster --name $(KIND_CLUSTER) --config kind-config.yaml

kind-load: image ## Build IMAGE and load it into the kind cluster's nodes (kind, Docker)
	kind load docker-image $(IMAGE) --name $(KIND_CLUSTER)

kind-delete: ## Delete the kind cluster KIND_CLUSTER (kind, Docker)
	kind delete cluster --name $(KIND_CLUSTER)

demo: ## Run an example flow locally and offline (scripts/demo)
	bash scripts/demo

test: ## Lint, type-check and run every test tier (scripts/test)
	bash scripts/test

crds: ## Regenerate crds/ from the resource models
	.venv/bin/flowpod crds
