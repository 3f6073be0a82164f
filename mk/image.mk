# Container image targets; included by the top-level Makefile (`include mk/image.mk`).
#
#   make image      build workshop-runner:<version> with podman, else docker
#   make hadolint   lint the Dockerfile (warnings and errors fail; see .hadolint.yaml)
#
# Override with e.g. `make image CONTAINER_ENGINE=docker IMAGE=quay.io/me/workshop-runner`.

CONTAINER_ENGINE ?= $(shell command -v podman 2>/dev/null || command -v docker 2>/dev/null)
IMAGE ?= workshop-runner
IMAGE_VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
HADOLINT ?= .venv/bin/hadolint

.PHONY: image hadolint

image: hadolint
	@if [ -z "$(CONTAINER_ENGINE)" ]; then \
	    echo "make image: needs podman or docker; neither is installed" >&2; exit 2; fi
	@if ! $(CONTAINER_ENGINE) info >/dev/null 2>&1; then \
	    echo "make image: '$(CONTAINER_ENGINE) info' fails: no container engine is running" >&2; \
	    exit 2; fi
	$(CONTAINER_ENGINE) build --build-arg VERSION=$(IMAGE_VERSION) \
	    -t $(IMAGE):$(IMAGE_VERSION) -f Dockerfile .

hadolint:
	$(HADOLINT) --failure-threshold warning Dockerfile
