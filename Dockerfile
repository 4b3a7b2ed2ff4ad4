# voucher-gateway: slim, non-root image. Build: docker build -t voucher-gateway .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway gateway
COPY adapters adapters
COPY simulators simulators
COPY schemas schemas
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/vgw --create-home vgw
COPY --from=build /install /usr/local
USER vgw
WORKDIR /var/lib/vgw
# Until `vgw serve` lands (the gateway service issue), the image runs the self-contained demo.
HEALTHCHECK --interval=30s --timeout=5s CMD ["vgw", "--help"]
ENTRYPOINT ["vgw"]
CMD ["demo"]
