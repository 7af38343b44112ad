//! A misbehaving Vault for the failure modes a real OpenBao cannot be made to show on
//! demand: answers that are slow, malformed, missing their auth section, or 5xx a set number
//! of times. Everything semantic is tested against real OpenBao instead.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
pub struct Behaviour {
    /// Delay before answering a login.
    pub login_delay: Duration,
    /// Body of a successful login answer.
    pub login_body: Value,
    /// Answers to reads, in order; the last one repeats.
    pub reads: Vec<(u16, Value)>,
    pub read_delay: Duration,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            login_delay: Duration::ZERO,
            login_body: json!({"auth": {"client_token": "s.fake-vault-token", "lease_duration": 3600, "renewable": true}}),
            reads: vec![(200, json!({"data": {"k": "v"}}))],
            read_delay: Duration::ZERO,
        }
    }
}

pub struct FakeVault {
    pub addr: String,
    pub logins: Arc<AtomicUsize>,
    pub reads: Arc<AtomicUsize>,
    pub behaviour: Arc<Mutex<Behaviour>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeVault {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeVault {
    pub async fn start(b: Behaviour) -> FakeVault {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let logins = Arc::new(AtomicUsize::new(0));
        let reads = Arc::new(AtomicUsize::new(0));
        let behaviour = Arc::new(Mutex::new(b));
        let (l, r, b) = (logins.clone(), reads.clone(), behaviour.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (l, r, b) = (l.clone(), r.clone(), b.clone());
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (l, r, b) = (l.clone(), r.clone(), b.clone());
                            async move {
                                let beh = b.lock().unwrap().clone();
                                let (status, body, delay) = if req.uri().path().ends_with("/login")
                                {
                                    l.fetch_add(1, Ordering::SeqCst);
                                    (200, beh.login_body.clone(), beh.login_delay)
                                } else {
                                    let n = r.fetch_add(1, Ordering::SeqCst);
                                    let (s, v) = beh.reads[n.min(beh.reads.len() - 1)].clone();
                                    (s, v, beh.read_delay)
                                };
                                tokio::time::sleep(delay).await;
                                let mut resp =
                                    Response::new(Full::new(Bytes::from(body.to_string())));
                                *resp.status_mut() = StatusCode::from_u16(status).unwrap();
                                Ok::<_, std::convert::Infallible>(resp)
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeVault {
            addr,
            logins,
            reads,
            behaviour,
            task,
        }
    }
}
