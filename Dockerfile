# voucher-gateway: slim, non-root image of the `vgw` command. Build: docker build -t voucher-gateway .
# Run: docker run -v vgw-etc:/etc/vgw -p 8443:8443 voucher-gateway   (serve --config /etc/vgw/vgw.toml);
# compose.yaml runs the whole test deployment (docs/operations.md "Containers").

# --- build: a virtualenv with the package and its wheels, no compilers left behind -------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/vgw
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY adapters adapters
COPY simulators simulators
COPY schemas schemas
RUN /opt/vgw/bin/pip install . && /opt/vgw/bin/vgw --help >/dev/null

# --- run --------------------------------------------------------------------------------------------------
FROM python:3.11-slim
# AR PL UMing: the Traditional Chinese font the PDF statements (對帳單) are set in.
RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-arphic-uming \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --home-dir /var/lib/vgw --create-home vgw \
 && install -d -o vgw -g vgw /etc/vgw
COPY --from=build /opt/vgw /opt/vgw
ENV PATH=/opt/vgw/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    VGW_METRICS_LISTEN=127.0.0.1:9100
USER vgw
WORKDIR /var/lib/vgw
VOLUME ["/etc/vgw"]
EXPOSE 8443
# /readyz needs a client certificate, so the image's own check asks the metrics listener inside the container
# (the process and its reactor answer); compose.yaml checks /readyz with a certificate (adapters/http/health_check.py).
# The check asks the listener VGW_METRICS_LISTEN names; that variable beats metrics.listen in vgw.toml
# (environment > file), so move the listener with -e VGW_METRICS_LISTEN=..., not in the file.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-m", "adapters.http.health_check"]
ENTRYPOINT ["vgw"]
CMD ["serve", "--config", "/etc/vgw/vgw.toml"]
