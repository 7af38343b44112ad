//! A stand-in for the Kubernetes API server, implementing only what is called here
//! (TokenReview, for OpenBao's kubernetes auth), with the real paths, status codes and
//! bodies, recording what it was asked.

use super::tokens;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// The bearer token OpenBao presents when it calls TokenReview.
pub const REVIEWER_TOKEN: &str = "reviewer-token-for-tests";
/// Audience of tokens that name no other.
pub const API_AUDIENCE: &str = tokens::ISSUER;

#[derive(Default)]
pub struct Recorded {
    pub requests: Vec<(String, String, Value)>,
}

pub struct KubeApi {
    pub url: String,
    pub recorded: Arc<Mutex<Recorded>>,
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
        let rec = recorded.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let rec = rec.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(req, rec.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        KubeApi {
            url,
            recorded,
            task,
        }
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

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
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
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
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
        .push((method.clone(), path.clone(), body.clone()));

    if bearer.is_none() {
        return Ok(reply(
            StatusCode::UNAUTHORIZED,
            status_body(401, "Unauthorized", "Unauthorized"),
        ));
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
