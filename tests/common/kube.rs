//! A stand-in for the Kubernetes API server, implementing only what is called here, with the
//! real paths, status codes and bodies, recording what it was asked:
//! - TokenReview (OpenBao's kubernetes auth verifies pod tokens with it);
//! - TokenRequest (the provider asks for a pod's token when the driver sent none);
//! - Secret get and create (the key of object versions), with AlreadyExists on a race;
//! - pods: get, list and watch as kube-apiserver serves them, with resource versions, a
//!   field selector on `spec.nodeName`, watches resumed from a resource version (or told
//!   `410 Expired` once it is compacted away), watches the server closes, and ADDED,
//!   MODIFIED and DELETED events.
//!
//! The provider reaches it through `KUBECONFIG`, as it would reach a cluster.

use super::tokens;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// The bearer token OpenBao presents when it calls TokenReview.
pub const REVIEWER_TOKEN: &str = "reviewer-token-for-tests";
/// The bearer token the provider presents (written into the kubeconfig).
pub const PROVIDER_TOKEN: &str = "provider-token-for-tests";
/// The namespace the provider runs in.
pub const PROVIDER_NAMESPACE: &str = "csi";
/// Audience of tokens that name no other.
pub const API_AUDIENCE: &str = tokens::ISSUER;

#[derive(Default)]
pub struct Recorded {
    pub requests: Vec<(String, String, Value)>,
    /// Secrets by (namespace, name).
    pub secrets: std::collections::BTreeMap<(String, String), Value>,
    /// Answer TokenRequests with 403, as without the RBAC.
    pub deny_token_requests: bool,
    /// Hold Secret GETs until this many have arrived (to force a create race).
    pub secret_get_barrier: usize,
    pub secret_gets_waiting: usize,
    /// Hold every Secret request unanswered while set (an overloaded API server).
    pub hang_secrets: bool,
    /// Pods by (namespace, name).
    pub pods: std::collections::BTreeMap<(String, String), Value>,
    /// The last resource version given out.
    pub resource_version: u64,
    /// Pod events: (resource version, type, object), oldest first.
    pub events: Vec<(u64, &'static str, Value)>,
    /// Watches from a resource version at or below this are told 410 Expired.
    pub compacted: u64,
    /// Bumped to close every open watch (the server ends them, as at its timeout).
    pub watch_generation: u64,
    /// Answer new watches with 503 while set (a watch that cannot be re-established).
    pub refuse_watches: bool,
}

pub struct KubeApi {
    pub url: String,
    pub recorded: Arc<Mutex<Recorded>>,
    /// Woken on every pod event and watch closing.
    changed: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KubeApi {
    pub async fn start() -> KubeApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let recorded = Arc::new(Mutex::new(Recorded::default()));
        let changed = Arc::new(tokio::sync::Notify::new());
        let (rec, chg) = (recorded.clone(), changed.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (rec, chg) = (rec.clone(), chg.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        handle(req, rec.clone(), chg.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        KubeApi {
            url,
            recorded,
            changed,
            task,
        }
    }

    /// Creates a running pod of service account `sa` on `node`; returns its uid.
    pub fn add_pod(&self, namespace: &str, name: &str, sa: &str, node: &str) -> String {
        let uid = format!("uid-{name}-{}", super::rand_suffix());
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": uid},
            "spec": {"nodeName": node, "serviceAccountName": sa,
                     "containers": [{"name": "app", "image": "app:1"}]},
            "status": {"phase": "Running"},
        });
        self.pod_event("ADDED", pod);
        uid
    }

    /// Deletes pod `namespace/name` (a DELETED event), if it exists.
    pub fn delete_pod(&self, namespace: &str, name: &str) {
        let pod = self
            .recorded
            .lock()
            .unwrap()
            .pods
            .get(&(namespace.to_string(), name.to_string()))
            .cloned();
        if let Some(pod) = pod {
            self.pod_event("DELETED", pod);
        }
    }

    /// Sets a pod's phase (a MODIFIED event).
    pub fn set_pod_phase(&self, namespace: &str, name: &str, phase: &str) {
        let pod = self
            .recorded
            .lock()
            .unwrap()
            .pods
            .get(&(namespace.to_string(), name.to_string()))
            .cloned();
        if let Some(mut pod) = pod {
            pod["status"]["phase"] = json!(phase);
            self.pod_event("MODIFIED", pod);
        }
    }

    fn pod_event(&self, kind: &'static str, mut pod: Value) {
        {
            let mut r = self.recorded.lock().unwrap();
            r.resource_version += 1;
            let rv = r.resource_version;
            pod["metadata"]["resourceVersion"] = json!(rv.to_string());
            let key = (
                pod["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                pod["metadata"]["name"].as_str().unwrap_or("").to_string(),
            );
            if kind == "DELETED" {
                r.pods.remove(&key);
            } else {
                r.pods.insert(key, pod.clone());
            }
            r.events.push((rv, kind, pod));
        }
        self.changed.notify_waiters();
    }

    /// Ends every open watch, as the server does at a watch's timeout or on restart.
    pub fn close_watches(&self) {
        self.recorded.lock().unwrap().watch_generation += 1;
        self.changed.notify_waiters();
    }

    /// While set, new watches are answered 503 (and the open ones are closed).
    pub fn refuse_watches(&self, refuse: bool) {
        self.recorded.lock().unwrap().refuse_watches = refuse;
        if refuse {
            self.close_watches();
        }
    }

    /// Forgets the event history: a watch resumed from an older resource version is told
    /// 410 Expired and must list again.
    pub fn compact(&self) {
        let mut r = self.recorded.lock().unwrap();
        r.compacted = r.resource_version;
        r.events.clear();
    }

    /// Pod list and watch calls so far: (path and query) of each.
    pub fn pod_calls(&self) -> Vec<String> {
        self.recorded
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(m, p, _)| m == "GET" && p.contains("/pods"))
            .map(|(_, p, _)| p.clone())
            .collect()
    }

    /// A kubeconfig pointing at this stand-in, with the provider's token and namespace.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        kubeconfig_for(&self.url, dir)
    }

    /// Requests whose path contains `path_part`, with their bodies.
    pub fn requests(&self, method: &str, path_part: &str) -> Vec<Value> {
        self.recorded
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(m, p, _)| m == method && p.contains(path_part))
            .map(|(_, _, b)| b.clone())
            .collect()
    }

    pub fn count(&self, path_part: &str) -> usize {
        self.recorded
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(_, p, _)| p.contains(path_part))
            .count()
    }
}

/// A kubeconfig for the API server at `url` (the stand-in, or one that hangs or refuses),
/// with the provider's token and namespace.
pub fn kubeconfig_for(url: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\nclusters:\n- name: test\n  cluster:\n    server: {url}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: provider\n    namespace: {PROVIDER_NAMESPACE}\nusers:\n- name: provider\n  user:\n    token: {PROVIDER_TOKEN}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// An API server that accepts connections and never answers (an overloaded one), until
/// dropped.
pub struct HungApi {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl HungApi {
    pub async fn start() -> HungApi {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        HungApi { url, task }
    }
}

impl Drop for HungApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Body = BoxBody<Bytes, std::convert::Infallible>;

fn reply(status: StatusCode, body: Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    rec: Arc<Mutex<Recorded>>,
    changed: Arc<tokio::sync::Notify>,
) -> Result<Response<Body>, std::convert::Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query: std::collections::HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let recorded_path = match req.uri().query() {
        Some(q) if path.contains("/pods") => format!("{path}?{q}"),
        _ => path.clone(),
    };
    let bearer = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    rec.lock()
        .unwrap()
        .requests
        .push((method.clone(), recorded_path, body.clone()));

    if bearer.is_none() {
        return Ok(reply(
            StatusCode::UNAUTHORIZED,
            status_body(401, "Unauthorized", "Unauthorized"),
        ));
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if bearer.as_deref() == Some(PROVIDER_TOKEN) {
        match (method.as_str(), segments.as_slice()) {
            (
                "POST",
                [
                    "api",
                    "v1",
                    "namespaces",
                    ns,
                    "serviceaccounts",
                    sa,
                    "token",
                ],
            ) => {
                if rec.lock().unwrap().deny_token_requests {
                    let msg = format!(
                        "serviceaccounts \"{sa}\" is forbidden: User \"system:serviceaccount:{PROVIDER_NAMESPACE}:vault-csi-provider\" cannot create resource \"serviceaccounts/token\" in API group \"\" in the namespace \"{ns}\""
                    );
                    return Ok(reply(
                        StatusCode::FORBIDDEN,
                        status_body(403, "Forbidden", &msg),
                    ));
                }
                return Ok(token_request(ns, sa, &body));
            }
            ("GET", ["api", "v1", "pods"]) => {
                let node = node_selector(&query);
                let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
                if watching {
                    return Ok(watch_pods(rec, changed, node, &query));
                }
                return Ok(list_pods(&rec, node.as_deref()));
            }
            ("GET", ["api", "v1", "namespaces", ns, "pods", name]) => {
                let pod = rec
                    .lock()
                    .unwrap()
                    .pods
                    .get(&(ns.to_string(), name.to_string()))
                    .cloned();
                return Ok(match pod {
                    Some(p) => reply(StatusCode::OK, p),
                    None => reply(
                        StatusCode::NOT_FOUND,
                        status_body(404, "NotFound", &format!("pods \"{name}\" not found")),
                    ),
                });
            }
            ("GET" | "POST", ["api", "v1", "namespaces", _, "secrets", ..])
                if rec.lock().unwrap().hang_secrets =>
            {
                while rec.lock().unwrap().hang_secrets {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                return Ok(reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    status_body(503, "ServiceUnavailable", "the server was overloaded"),
                ));
            }
            ("GET", ["api", "v1", "namespaces", ns, "secrets", name]) => {
                // Look first, then wait: racing readers all see the state before any create.
                let found = rec
                    .lock()
                    .unwrap()
                    .secrets
                    .get(&(ns.to_string(), name.to_string()))
                    .cloned();
                wait_barrier(&rec).await;
                return Ok(match found {
                    Some(secret) => reply(StatusCode::OK, secret),
                    None => reply(
                        StatusCode::NOT_FOUND,
                        status_body(404, "NotFound", &format!("secrets \"{name}\" not found")),
                    ),
                });
            }
            ("POST", ["api", "v1", "namespaces", ns, "secrets"]) => {
                let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
                let mut r = rec.lock().unwrap();
                let key = (ns.to_string(), name.clone());
                if r.secrets.contains_key(&key) {
                    return Ok(reply(
                        StatusCode::CONFLICT,
                        status_body(
                            409,
                            "AlreadyExists",
                            &format!("secrets \"{name}\" already exists"),
                        ),
                    ));
                }
                let mut stored = body.clone();
                stored["metadata"]["namespace"] = json!(ns);
                stored["metadata"]["uid"] = json!(format!("uid-{name}"));
                r.secrets.insert(key, stored.clone());
                return Ok(reply(StatusCode::CREATED, stored));
            }
            _ => {}
        }
    }
    if method == "POST" && path == "/apis/authentication.k8s.io/v1/tokenreviews" {
        if bearer.as_deref() != Some(REVIEWER_TOKEN) {
            return Ok(reply(
                StatusCode::FORBIDDEN,
                status_body(
                    403,
                    "Forbidden",
                    "tokenreviews.authentication.k8s.io is forbidden",
                ),
            ));
        }
        return Ok(reply(StatusCode::CREATED, token_review(&body)));
    }
    Ok(reply(
        StatusCode::NOT_FOUND,
        status_body(
            404,
            "NotFound",
            &format!("the server could not find the requested resource ({method} {path})"),
        ),
    ))
}

/// What the API server answers to a TokenReview: signature, expiry and audience checked.
fn token_review(body: &Value) -> Value {
    let token = body["spec"]["token"].as_str().unwrap_or("");
    let wanted: Vec<String> = match body["spec"]["audiences"].as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => vec![API_AUDIENCE.to_string()],
    };
    let fail = |msg: &str| {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
               "status": {"authenticated": false, "error": msg, "user": {}}})
    };
    let claims = match tokens::verify(token) {
        Ok(c) => c,
        Err(e) => return fail(&format!("[invalid bearer token, {e}]")),
    };
    let token_aud: Vec<String> = match &claims["aud"] {
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Value::String(s) => vec![s.clone()],
        _ => vec![],
    };
    let matched: Vec<&String> = wanted.iter().filter(|w| token_aud.contains(w)).collect();
    if matched.is_empty() {
        return fail("[invalid bearer token, token audiences don't match]");
    }
    let k = &claims["kubernetes.io"];
    json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "status": {
            "authenticated": true,
            "audiences": matched,
            "user": {
                "username": claims["sub"],
                "uid": k["serviceaccount"]["uid"],
                "groups": ["system:serviceaccounts", format!("system:serviceaccounts:{}", k["namespace"].as_str().unwrap_or(""))],
                "extra": {
                    "authentication.kubernetes.io/pod-name": [k["pod"]["name"]],
                    "authentication.kubernetes.io/pod-uid": [k["pod"]["uid"]],
                }
            }
        }
    })
}

async fn wait_barrier(rec: &Arc<Mutex<Recorded>>) {
    {
        let mut r = rec.lock().unwrap();
        if r.secret_get_barrier == 0 {
            return;
        }
        r.secret_gets_waiting += 1;
    }
    for _ in 0..200 {
        {
            let mut r = rec.lock().unwrap();
            if r.secret_gets_waiting >= r.secret_get_barrier {
                r.secret_get_barrier = 0;
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

/// What the API server answers to a TokenRequest: a token for the service account, bound
/// to the pod named in boundObjectRef, for the audiences asked (the API's own by default).
fn token_request(ns: &str, sa: &str, body: &Value) -> Response<Body> {
    let spec = &body["spec"];
    let bound = &spec["boundObjectRef"];
    let audiences: Vec<String> = match spec["audiences"].as_array() {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => vec![API_AUDIENCE.to_string()],
    };
    let seconds = spec["expirationSeconds"].as_i64().unwrap_or(3600);
    let claims = tokens::Claims {
        namespace: ns.to_string(),
        service_account: sa.to_string(),
        sa_uid: format!("sa-uid-{sa}"),
        pod_name: bound["name"].as_str().unwrap_or("").to_string(),
        pod_uid: bound["uid"].as_str().unwrap_or("").to_string(),
        audience: audiences[0].clone(),
        expires: tokens::now() + seconds,
    };
    let jwt = tokens::sign(&claims);
    reply(
        StatusCode::CREATED,
        json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"name": sa, "namespace": ns},
            "spec": spec,
            "status": {"token": jwt, "expirationTimestamp": "2099-01-01T00:00:00Z"},
        }),
    )
}

/// The node a `fieldSelector=spec.nodeName=<node>` names, if any.
fn node_selector(query: &std::collections::HashMap<String, String>) -> Option<String> {
    query.get("fieldSelector").and_then(|f| {
        f.split(',')
            .find_map(|term| term.strip_prefix("spec.nodeName="))
            .map(str::to_string)
    })
}

fn on_node(pod: &Value, node: Option<&str>) -> bool {
    node.is_none_or(|n| pod["spec"]["nodeName"] == n)
}

/// A PodList of the pods on `node` (all of them, in one page), at the current version.
fn list_pods(rec: &Arc<Mutex<Recorded>>, node: Option<&str>) -> Response<Body> {
    let r = rec.lock().unwrap();
    let items: Vec<Value> = r
        .pods
        .values()
        .filter(|p| on_node(p, node))
        .cloned()
        .collect();
    reply(
        StatusCode::OK,
        json!({"apiVersion": "v1", "kind": "PodList",
               "metadata": {"resourceVersion": r.resource_version.to_string()},
               "items": items}),
    )
}

/// A watch as kube-apiserver streams it: one JSON event per line in a chunked body, from
/// the resource version asked (all pods as ADDED when it is "0" or absent), an ERROR with
/// 410 Expired when that version was compacted away, until the server closes it.
fn watch_pods(
    rec: Arc<Mutex<Recorded>>,
    changed: Arc<tokio::sync::Notify>,
    node: Option<String>,
    query: &std::collections::HashMap<String, String>,
) -> Response<Body> {
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (generation, refused, compacted) = {
        let r = rec.lock().unwrap();
        (r.watch_generation, r.refuse_watches, r.compacted)
    };
    if refused {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            status_body(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
        );
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let line = |v: Value| Bytes::from(format!("{v}\n"));
        if from != 0 && from <= compacted {
            let status = status_body(
                410,
                "Expired",
                &format!("too old resource version: {from} ({compacted})"),
            );
            let _ = tx
                .send(line(json!({"type": "ERROR", "object": status})))
                .await;
            return;
        }
        let mut sent = from;
        if from == 0 {
            let (pods, rv) = {
                let r = rec.lock().unwrap();
                let pods: Vec<Value> = r
                    .pods
                    .values()
                    .filter(|p| on_node(p, node.as_deref()))
                    .cloned()
                    .collect();
                (pods, r.resource_version)
            };
            for p in pods {
                if tx
                    .send(line(json!({"type": "ADDED", "object": p})))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            sent = rv;
        }
        loop {
            let notified = changed.notified();
            let (batch, closed) = {
                let r = rec.lock().unwrap();
                let batch: Vec<(u64, &'static str, Value)> = r
                    .events
                    .iter()
                    .filter(|(rv, _, p)| *rv > sent && on_node(p, node.as_deref()))
                    .cloned()
                    .collect();
                (batch, r.watch_generation != generation)
            };
            if closed {
                return;
            }
            for (rv, kind, p) in batch {
                if tx
                    .send(line(json!({"type": kind, "object": p})))
                    .await
                    .is_err()
                {
                    return;
                }
                sent = rv;
            }
            notified.await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| {
            (
                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b)),
                rx,
            )
        })
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}
