# workshop-runner: the per-user provisioning Job's image.
#
# UBI 9 minimal + the distribution's Python 3.11 rather than ubi9/python-311: that image is an
# s2i builder (gcc, devel headers, npm, ~1 GB); here the final stage has only the interpreter
# and a venv. Both stages use the same base, so the venv's interpreter path
# (/usr/bin/python3.11) is the same where it is built and where it runs.
# Pinned by digest (a tag can be re-pushed): bump the base in this one line, tag and digest
# together - `skopeo inspect --format '{{.Digest}}' docker://registry.access.redhat.com/ubi9/ubi-minimal:9.6`
# prints the digest of the tag's current multi-arch index.
FROM registry.access.redhat.com/ubi9/ubi-minimal:9.6@sha256:34880b64c07f28f64d95737f82f891516de9a3b43583f39970f7bf8e4cfa48b7 AS base

FROM base AS builder
RUN microdnf install -y --nodocs --setopt=install_weak_deps=0 python3.11 python3.11-pip \
    && microdnf clean all
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY runner/ runner/
COPY steps/ steps/
COPY manifests/ manifests/
COPY mk/install-venv.sh /usr/local/bin/install-venv
# The wheel carries manifests/templates and manifests/deploy (pyproject force-include).
RUN python3.11 -m pip wheel --no-deps --wheel-dir /dist . \
    && install-venv python3.11 /opt/workshop-runner /dist/workshop_runner-*.whl requirements.lock

FROM base
ARG VERSION=0.1.0
LABEL name="workshop-runner" \
      version="${VERSION}" \
      summary="Provision per-user OpenShift Service Mesh workshop environments, one Job per user" \
      description="Runs the ordered, idempotent provisioning steps for one workshop user (namespaces, OLM operator, service mesh control plane, member roll, Kiali) and reports a JSON result." \
      io.k8s.display-name="workshop-runner" \
      io.k8s.description="Per-user workshop provisioning runner" \
      io.openshift.tags="workshop,servicemesh,provisioning" \
      org.opencontainers.image.title="workshop-runner" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# Only the interpreter: no pip, no compiler, no package manager cache.
RUN microdnf install -y --nodocs --setopt=install_weak_deps=0 python3.11 \
    && microdnf clean all
COPY --from=builder /opt/workshop-runner /opt/workshop-runner
# Nothing is written at run time except /tmp (an emptyDir in the Job) and the termination log,
# so the image works with a read-only root filesystem and under OpenShift's arbitrary UID with
# group 0: every file is root-owned and world-readable, nothing needs to be group-writable.
ENV PATH=/opt/workshop-runner/bin:${PATH} \
    HOME=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so the kubelet can verify runAsNonRoot; OpenShift replaces it with its own UID.
USER 1001
ENTRYPOINT ["workshop-runner"]
CMD ["--help"]
