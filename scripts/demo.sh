#!/usr/bin/env bash
# The main job, end to end on one machine: installs OpenBao if missing, builds the provider,
# starts an OpenBao dev server with jwt auth and a demo secret, starts the provider on a
# Unix socket, mounts deploy/examples/demo-class.yaml through the socket exactly as the
# Secrets Store CSI driver would (Mount with attributes, secrets, permission and a
# service-account token), prints the files, and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# Only OpenBao: the tests' tools (cargo-deny, PostgreSQL, kubectl, ...) are not needed here.
BAO="$(./scripts/setup.sh demo | tail -n 1)"
echo "==> building vault-csi-provider"
cargo build --locked --bin vault-csi-provider
PROVIDER="$ROOT/target/debug/vault-csi-provider"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT="$(free_port)"
export BAO_ADDR="http://127.0.0.1:$PORT" BAO_TOKEN="demo-root"
export VAULT_ADDR="$BAO_ADDR" VAULT_TOKEN="$BAO_TOKEN"

echo "==> starting OpenBao dev server on $BAO_ADDR"
"$BAO" server -dev -dev-root-token-id="$BAO_TOKEN" -dev-listen-address="127.0.0.1:$PORT" >"$WORK/openbao.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do "$BAO" status >/dev/null 2>&1 && break; sleep 0.1; done
"$BAO" status >/dev/null || { cat "$WORK/openbao.log"; exit 1; }

echo "==> configuring jwt auth, a policy, a role and a demo secret"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/sa.key" 2>/dev/null
openssl pkey -in "$WORK/sa.key" -pubout -out "$WORK/sa.pub"
"$BAO" auth enable jwt >/dev/null
"$BAO" write auth/jwt/config jwt_validation_pubkeys=@"$WORK/sa.pub" >/dev/null
"$BAO" policy write demo - >/dev/null <<'HCL'
path "secret/data/demo/*" { capabilities = ["read"] }
HCL
"$BAO" write auth/jwt/role/demo role_type=jwt bound_audiences=vault user_claim=sub \
  bound_subject=system:serviceaccount:demo:app token_policies=demo token_ttl=10m >/dev/null
"$BAO" kv put secret/demo/db username=app password='correct horse battery staple' port=5432 \
  ca_der="$(printf 'demo CA bytes' | base64)" >/dev/null

echo "==> signing a service-account token for demo/app (as kubelet's TokenRequest would)"
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
now=$(date +%s)
header=$(printf '{"alg":"RS256","typ":"JWT"}' | b64url)
payload=$(printf '{"iss":"https://kubernetes.default.svc.cluster.local","sub":"system:serviceaccount:demo:app","aud":["vault"],"iat":%d,"nbf":%d,"exp":%d,"kubernetes.io":{"namespace":"demo","serviceaccount":{"name":"app","uid":"6f1c1d6e-0000-4000-8000-000000000001"},"pod":{"name":"app-7d9f","uid":"6f1c1d6e-0000-4000-8000-000000000002"}}}' \
  "$now" "$now" $((now + 600)) | b64url)
signature=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -sign "$WORK/sa.key" | b64url)
printf '%s.%s.%s' "$header" "$payload" "$signature" >"$WORK/token"

SOCKET="$WORK/providers/vault.sock"
echo "==> starting the provider on $SOCKET"
# No Kubernetes API here: the object-version key comes from a file (in a cluster, from a Secret).
openssl rand -hex 32 >"$WORK/hmac.key"
"$PROVIDER" -endpoint="$SOCKET" -health-addr=127.0.0.1:0 -vault-addr="$BAO_ADDR" \
  -hmac-key-file="$WORK/hmac.key" >"$WORK/provider.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -S "$SOCKET" ] && break; sleep 0.1; done
[ -S "$SOCKET" ] || { cat "$WORK/provider.log"; exit 1; }

echo "==> checking deploy/examples/demo-class.yaml as a CI step would (offline)"
"$PROVIDER" check deploy/examples/demo-class.yaml

echo "==> mounting deploy/examples/demo-class.yaml through the socket"
"$PROVIDER" mount -class deploy/examples/demo-class.yaml -token-file "$WORK/token" \
  -socket "$SOCKET"
"$PROVIDER" mount -class deploy/examples/demo-class.yaml -token-file "$WORK/token" \
  -socket "$SOCKET" -out "$WORK/volume"
echo
echo "==> the pod's volume"
(cd "$WORK/volume" && find . -type f | sort | while read -r f; do
  printf '%s %s\n' "$(stat -c '%a' "$f")" "${f#./}"
done)
for f in db/username db/password db/port tls/ca.der db.json; do
  printf '\n--- %s ---\n' "$f"
  cat "$WORK/volume/$f"
  echo
done
echo
echo "==> provider log"
cat "$WORK/provider.log"
