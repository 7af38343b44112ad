# Build: docker build -t vault-csi-provider:0.1.0 .
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin vault-csi-provider

# distroless/cc carries glibc and the CA bundle the provider uses for system roots.
FROM gcr.io/distroless/cc-debian12
COPY --from=build /src/target/release/vault-csi-provider /bin/vault-csi-provider
ENTRYPOINT ["/bin/vault-csi-provider"]
