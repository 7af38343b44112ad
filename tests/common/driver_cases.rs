//! The Secrets Store CSI driver's own client, recorded and replayed: the calls every driver
//! release makes (per case, as its node server and rotation reconciler build them), the
//! OpenBao they run against, and the files they must give. Shared by the live run of the
//! real client (`tests/driver_client.rs`, which also records) and the replay of its
//! recordings in the test command (`tests/driver_replay.rs`), so both see the same Vault.

use super::kube::KubeApi;
use super::tokens;
use super::{Admin, OpenBao, ProviderProcess};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The driver releases recorded: the first whose client writes the provider's files
/// (v0.0.21) to the newest, one per minor.
pub const TAGS: [&str; 9] = [
    "v0.0.21", "v0.0.22", "v1.0.1", "v1.1.2", "v1.2.4", "v1.3.4", "v1.4.8", "v1.5.6", "v1.6.0",
];

/// The pod every case mounts for.
pub const NAMESPACE: &str = "test";
pub const POD: &str = "kv-pod";
pub const POD_UID: &str = "2b7c3a4e-8f1d-4c6a-9e0b-5d2f7a1c3e9b";
pub const SERVICE_ACCOUNT: &str = "kv-app";
/// The volume's target path as kubelet names it.
pub const TARGET_PATH: &str = "/var/lib/kubelet/pods/2b7c3a4e-8f1d-4c6a-9e0b-5d2f7a1c3e9b/volumes/kubernetes.io~csi/secrets-store-inline/mount";
/// The object-version key of the recordings (the provider's `-hmac-key-file`), so that
/// replayed versions can be compared with the ones the real client received.
pub const HMAC_KEY: &str = "driver-recordings-object-version-key";
/// Recorded tokens expire on 2099-01-01, so that replays log in for years.
pub const TOKEN_EXPIRES: i64 = 4_070_908_800;
/// The SecretProviderClass name.
pub const CLASS: &str = "kv-secrets";

/// A service-account token for the pod and `audience`, as kubelet's TokenRequest makes it.
pub fn token(audience: &str) -> String {
    tokens::sign(&tokens::Claims {
        namespace: NAMESPACE.into(),
        service_account: SERVICE_ACCOUNT.into(),
        sa_uid: "sa-uid-kv-app".into(),
        pod_name: POD.into(),
        pod_uid: POD_UID.into(),
        audience: audience.into(),
        expires: TOKEN_EXPIRES,
    })
}

/// The `csi.storage.k8s.io/serviceAccount.tokens` value kubelet (or the driver) builds.
fn tokens_value() -> String {
    json!({"vault": {"token": token("vault"), "expirationTimestamp": "2099-01-01T00:00:00Z"}})
        .to_string()
}

const TOKENS_KEY: &str = "csi.storage.k8s.io/serviceAccount.tokens";

/// The key/value data the class reads, and the files it gives.
const KV: [(&str, &str); 3] = [
    ("username", "kv-user"),
    ("password", "s3cr3t-pa55"),
    ("region", "eu-west-1"),
];

/// What every case runs against: OpenBao seeded ([`seed`]), the Kubernetes API stand-in,
/// and the provider with the recordings' version key, reaching the stand-in through
/// `KUBECONFIG`.
pub struct Setup {
    pub bao: OpenBao,
    pub kube: KubeApi,
    pub provider: ProviderProcess,
    pub work: tempfile::TempDir,
}

pub async fn setup() -> Setup {
    let bao = OpenBao::start().await;
    seed(&bao).await;
    let kube = KubeApi::start().await;
    let work = tempfile::tempdir().unwrap();
    let kubeconfig = kube.kubeconfig(work.path()).display().to_string();
    let key = work.path().join("hmac.key");
    std::fs::write(&key, HMAC_KEY).unwrap();
    let provider = ProviderProcess::start_env(
        &bao.addr,
        &[&format!("-hmac-key-file={}", key.display())],
        &[("KUBECONFIG", &kubeconfig)],
    )
    .await;
    Setup {
        bao,
        kube,
        provider,
        work,
    }
}

/// OpenBao as every case needs it: jwt auth at `jwt` with role `kv` for the pod's service
/// account (audiences `vault` and the API's own, so that a token the provider requests
/// without an audience logs in too), and the data under `secret/`.
pub async fn seed(bao: &Admin) {
    bao.policy("kv", r#"path "secret/data/*" { capabilities = ["read"] }"#)
        .await;
    bao.enable_jwt("jwt").await;
    bao.write(
        "auth/jwt/role/kv",
        json!({
            "role_type": "jwt",
            "bound_audiences": ["vault", tokens::ISSUER],
            "user_claim": "sub",
            "bound_subject": format!("system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"),
            "token_policies": ["kv"],
            "token_ttl": "1h",
        }),
    )
    .await;
    let mut data: Map<String, Value> = KV.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    data.insert("config".into(), json!({"pool": 5, "hosts": ["a", "b"]}));
    data.insert("blob".into(), json!("aGVsbG8gZnJvbSB2YXVsdA=="));
    for i in 0..16 {
        data.insert(format!("k{i:02}"), json!(format!("value-{i:02}")));
    }
    bao.write("secret/data/kv", json!({ "data": data })).await;
    bao.write(
        "secret/data/other",
        json!({"data": {"token": "other-token"}}),
    )
    .await;
}

/// One object of the class: its file, mode and contents.
pub struct Expected {
    pub path: String,
    pub mode: u32,
    pub contents: Vec<u8>,
}

/// The class's objects (twenty: nested paths, modes, encodings, two reads) and what each
/// gives.
fn objects() -> Vec<(String, Expected)> {
    let mut out = Vec::new();
    let mut add = |yaml: String, path: &str, mode: u32, contents: &[u8]| {
        out.push((
            yaml,
            Expected {
                path: path.into(),
                mode,
                contents: contents.to_vec(),
            },
        ))
    };
    add(
        "- objectName: username\n  secretPath: secret/data/kv\n  secretKey: username\n".into(),
        "username",
        0o644,
        b"kv-user",
    );
    add(
        "- objectName: db/password\n  secretPath: secret/data/kv\n  secretKey: password\n  filePermission: 0600\n".into(),
        "db/password",
        0o600,
        b"s3cr3t-pa55",
    );
    add(
        "- objectName: deep/nested/dir/region\n  secretPath: /v1/secret/data/kv\n  secretKey: region\n  filePermission: 0440\n".into(),
        "deep/nested/dir/region",
        0o440,
        b"eu-west-1",
    );
    add(
        "- objectName: config.json\n  secretPath: secret/data/kv\n  secretKey: config\n".into(),
        "config.json",
        0o644,
        br#"{"hosts":["a","b"],"pool":5}"#,
    );
    add(
        "- objectName: blob.txt\n  secretPath: secret/data/kv\n  secretKey: blob\n  encoding: base64\n".into(),
        "blob.txt",
        0o644,
        b"hello from vault",
    );
    add(
        "- objectName: other/token\n  secretPath: secret/data/other\n  secretKey: token\n  filePermission: 0400\n".into(),
        "other/token",
        0o400,
        b"other-token",
    );
    for i in 0..14 {
        let mode = if i % 2 == 0 { 0o644 } else { 0o640 };
        add(
            format!(
                "- objectName: many/key-{i:02}\n  secretPath: secret/data/kv\n  secretKey: k{i:02}\n  filePermission: {mode:#o}\n"
            )
            .replace("0o", "0"),
            &format!("many/key-{i:02}"),
            mode,
            format!("value-{i:02}").as_bytes(),
        );
    }
    out
}

/// The files every successful case must give.
pub fn expected_files() -> Vec<Expected> {
    objects().into_iter().map(|(_, e)| e).collect()
}

/// The SecretProviderClass's `spec.parameters`.
pub fn class_parameters() -> Map<String, Value> {
    let objects: String = objects().into_iter().map(|(y, _)| y).collect();
    let mut m = Map::new();
    m.insert("roleName".into(), json!("kv"));
    m.insert("vaultAuthMountPath".into(), json!("jwt"));
    m.insert("objects".into(), json!(objects));
    m
}

/// What the driver is called with in one case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Case {
    /// An ordinary pod: tokens from the CSIDriver's tokenRequests in the volume context,
    /// no nodePublishSecretRef (the node server sends `secrets` as `null`).
    Pod,
    /// No tokens at all (a CSIDriver without tokenRequests): the provider requests one.
    PodTokenRequest,
    /// A volume with nodePublishSecretRef: its Secret's data in `secrets`.
    NodePublishSecretRef,
    /// Kubernetes 1.35+ with serviceAccountTokenInSecrets: the tokens in `secrets` (and, from
    /// v1.6.0, copied into the attributes by the node server).
    TokensInSecrets,
    /// The rotation reconciler of drivers up to v1.5 (the class's parameters and the pod's
    /// fields only, `{}` secrets, the current object versions); from v1.6.0, kubelet's
    /// republish through the node server.
    Rotation,
    /// A class without roleName, from an ordinary pod: the class's mistake is named.
    MissingRole,
}

impl Case {
    pub const ALL: [Case; 6] = [
        Case::Pod,
        Case::PodTokenRequest,
        Case::NodePublishSecretRef,
        Case::TokensInSecrets,
        Case::Rotation,
        Case::MissingRole,
    ];

    pub fn succeeds(self) -> bool {
        self != Case::MissingRole
    }
}

/// `tag` is `min` or newer (`min` as (major, minor)).
fn at_least(tag: &str, min: (u32, u32)) -> bool {
    let mut parts = tag
        .trim_start_matches('v')
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let v = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    v >= min
}

/// The inputs of one call, as the driver at `tag` builds them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Inputs {
    /// The attributes map (`json.Marshal`led by the driver: sorted keys).
    pub attributes: BTreeMap<String, String>,
    /// `None`: a nil map, sent as `null`.
    pub secrets: Option<BTreeMap<String, String>>,
    /// The current object versions the rotation reconciler passes.
    pub current: Option<BTreeMap<String, String>>,
}

fn strings(m: Map<String, Value>) -> BTreeMap<String, String> {
    m.into_iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string()))
        .collect()
}

/// The node server's attributes: the class's parameters with kubelet's volume context
/// copied over them (tokens included when kubelet sends them).
fn node_server(class: Map<String, Value>, tokens: bool) -> BTreeMap<String, String> {
    let mut a = strings(class);
    for (k, v) in [
        ("secretProviderClass", CLASS),
        ("csi.storage.k8s.io/pod.name", POD),
        ("csi.storage.k8s.io/pod.namespace", NAMESPACE),
        ("csi.storage.k8s.io/pod.uid", POD_UID),
        ("csi.storage.k8s.io/serviceAccount.name", SERVICE_ACCOUNT),
        ("csi.storage.k8s.io/ephemeral", "true"),
    ] {
        a.insert(k.into(), v.into());
    }
    if tokens {
        a.insert(TOKENS_KEY.into(), tokens_value());
    }
    a
}

/// What the driver at `tag` sends in `case`; `current` is what the pod case returned.
pub fn inputs(tag: &str, case: Case, current: &BTreeMap<String, String>) -> Inputs {
    let class = class_parameters();
    match case {
        Case::Pod => Inputs {
            attributes: node_server(class, true),
            ..Inputs::default()
        },
        Case::PodTokenRequest => Inputs {
            attributes: node_server(class, false),
            ..Inputs::default()
        },
        Case::NodePublishSecretRef => Inputs {
            attributes: node_server(class, true),
            secrets: Some(
                [("username", "np-user"), ("password", "np-pass")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            current: None,
        },
        Case::TokensInSecrets => Inputs {
            // v1.6.0's node server copies the tokens from secrets into the parameters.
            attributes: node_server(class, at_least(tag, (1, 6))),
            secrets: Some([(TOKENS_KEY.to_string(), tokens_value())].into()),
            current: None,
        },
        Case::Rotation if at_least(tag, (1, 6)) => Inputs {
            attributes: node_server(class, true),
            ..Inputs::default()
        },
        Case::Rotation => {
            // pkg/rotation/reconciler.go: the class's parameters, the pod's four fields and,
            // from v1.1, the tokens the driver requests itself; no volume attributes.
            let mut a = strings(class);
            for (k, v) in [
                ("csi.storage.k8s.io/pod.name", POD),
                ("csi.storage.k8s.io/pod.namespace", NAMESPACE),
                ("csi.storage.k8s.io/pod.uid", POD_UID),
                ("csi.storage.k8s.io/serviceAccount.name", SERVICE_ACCOUNT),
            ] {
                a.insert(k.into(), v.into());
            }
            if at_least(tag, (1, 1)) {
                a.insert(TOKENS_KEY.into(), tokens_value());
            }
            Inputs {
                attributes: a,
                secrets: Some(BTreeMap::new()),
                current: Some(current.clone()),
            }
        }
        Case::MissingRole => {
            let mut class = class;
            class.remove("roleName");
            Inputs {
                attributes: node_server(class, true),
                ..Inputs::default()
            }
        }
    }
}

/// How one recording was made.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Provenance {
    pub driver_tag: String,
    pub driver_commit: String,
    pub grpc_go: String,
    pub go: String,
    pub builder_api: String,
    pub made_by: String,
    pub recorded_on: String,
}

/// The request as the provider received it, decoded from the recorded bytes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Decoded {
    pub authority: String,
    pub user_agent: String,
    pub grpc_timeout: String,
    /// Every call's `:path`, in order (Version before Mount from v0.0.22).
    pub calls: Vec<String>,
    /// The attributes' keys (the values are in the bytes: the class, the pod, its token).
    pub attribute_keys: Vec<String>,
    pub secrets: String,
    pub target_path: String,
    pub permission: String,
    pub current_object_version: BTreeMap<String, String>,
}

/// One recorded call of the real client.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Recording {
    pub case: Case,
    /// Everything the client wrote on the connection, base64.
    pub client_bytes: String,
    pub decoded: Decoded,
    /// What the real client printed: object versions, errors as the driver logs them,
    /// and the target directory as its atomic writer left it.
    pub driver: Value,
}

/// All recordings of one driver release.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TagRecordings {
    pub provenance: Provenance,
    pub recordings: Vec<Recording>,
}

/// Where the recordings of `tag` are kept.
pub fn fixture_path(tag: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/driver")
        .join(format!("{tag}.json"))
}

/// The line the driver's node server logs for a failed Mount.
pub fn node_publish_error(code: &str, message: &str) -> String {
    format!(
        "failed to mount secrets store objects for pod {NAMESPACE}/{POD}, err: rpc error: code = {code} desc = {message}"
    )
}

/// What the provider answered to a replayed Mount.
#[derive(Debug)]
pub enum Answer {
    Files(vault_csi_provider::proto::MountResponse),
    /// The gRPC status: code name as Go spells it, and the message.
    Status(String, String),
}

/// Sends the recorded bytes to the provider at `socket` call by call, as the client did
/// (each call's bytes, then its answer, then the next), and returns the answer to the last
/// call (the Mount) and the request as decoded from the bytes.
pub async fn replay(socket: &std::path::Path, client_bytes: &[u8]) -> Result<Answer, String> {
    use prost::Message;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sent = super::h2wire::streams(client_bytes)?;
    let mut ends: Vec<(usize, u32)> = sent
        .iter()
        .filter_map(|(id, s)| s.end_offset.map(|end| (end, *id)))
        .collect();
    ends.sort();
    let Some(&(_, mount_stream)) = ends.last() else {
        return Err("the recording holds no complete call".into());
    };
    let mut conn = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|e| format!("connect {}: {e}", socket.display()))?;
    let mut received = Vec::new();
    let mut from = 0;
    for (end, stream) in ends {
        conn.write_all(&client_bytes[from..end])
            .await
            .map_err(|e| format!("write: {e}"))?;
        from = end;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let answered = super::h2wire::streams(&received)?
                .get(&stream)
                .is_some_and(|s| s.ended);
            if answered {
                break;
            }
            let mut buf = [0u8; 16384];
            let n = tokio::time::timeout_at(deadline, conn.read(&mut buf))
                .await
                .map_err(|_| format!("no answer to stream {stream} within 60 s"))?
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err(format!(
                    "the provider closed before answering stream {stream}"
                ));
            }
            received.extend_from_slice(&buf[..n]);
        }
    }
    // What the client sent after its last call (acknowledgements, its goodbye).
    let _ = conn.write_all(&client_bytes[from..]).await;
    let answers = super::h2wire::streams(&received)?;
    let answer = answers.get(&mount_stream).ok_or("no answer to the Mount")?;
    let status = answer
        .header("grpc-status")
        .ok_or("the answer has no grpc-status")?;
    if status != "0" {
        let code = tonic::Code::from_i32(status.parse().unwrap_or(2));
        let message = percent_decode(answer.header("grpc-message").unwrap_or(""));
        return Ok(Answer::Status(format!("{code:?}"), message));
    }
    let message = answer
        .messages()
        .into_iter()
        .next()
        .ok_or("a successful answer without a message")?;
    vault_csi_provider::proto::MountResponse::decode(message.as_slice())
        .map(Answer::Files)
        .map_err(|e| format!("MountResponse: {e}"))
}

/// gRPC's percent-encoding of `grpc-message`.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request the recorded bytes carry, decoded.
pub fn decode(client_bytes: &[u8]) -> Result<Decoded, String> {
    use prost::Message;
    let streams = super::h2wire::streams(client_bytes)?;
    let mut calls = Vec::new();
    let mut mount = None;
    for s in streams.values() {
        let Some(path) = s.header(":path") else {
            continue;
        };
        calls.push(path.to_string());
        if path.ends_with("/Mount") {
            mount = Some(s);
        }
    }
    let s = mount.ok_or("no Mount call in the recording")?;
    let message = s
        .messages()
        .into_iter()
        .next()
        .ok_or("a Mount without a message")?;
    let req = vault_csi_provider::proto::MountRequest::decode(message.as_slice())
        .map_err(|e| format!("MountRequest: {e}"))?;
    Ok(Decoded {
        authority: s.header(":authority").unwrap_or_default().into(),
        user_agent: s.header("user-agent").unwrap_or_default().into(),
        grpc_timeout: s.header("grpc-timeout").unwrap_or_default().into(),
        calls,
        attribute_keys: serde_json::from_str::<BTreeMap<String, Value>>(&req.attributes)
            .map_err(|e| format!("attributes: {e}"))?
            .into_keys()
            .collect(),
        secrets: req.secrets,
        target_path: req.target_path,
        permission: req.permission,
        current_object_version: req
            .current_object_version
            .into_iter()
            .map(|v| (v.id, v.version))
            .collect(),
    })
}
