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
    /// Requests being answered now, and the most there ever were at once.
    pub in_flight: Arc<AtomicUsize>,
    pub max_in_flight: Arc<AtomicUsize>,
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
        let mut fake = FakeVault {
            addr,
            logins: Arc::new(AtomicUsize::new(0)),
            reads: Arc::new(AtomicUsize::new(0)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            max_in_flight: Arc::new(AtomicUsize::new(0)),
            behaviour: Arc::new(Mutex::new(b)),
            task: tokio::spawn(async {}),
        };
        let counters = Counters {
            logins: fake.logins.clone(),
            reads: fake.reads.clone(),
            in_flight: fake.in_flight.clone(),
            max_in_flight: fake.max_in_flight.clone(),
            behaviour: fake.behaviour.clone(),
        };
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let c = counters.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let c = c.clone();
                            async move {
                                Ok::<_, std::convert::Infallible>(c.answer(req.uri().path()).await)
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        fake.task = task;
        fake
    }
}

#[derive(Clone)]
struct Counters {
    logins: Arc<AtomicUsize>,
    reads: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
    behaviour: Arc<Mutex<Behaviour>>,
}

impl Counters {
    async fn answer(&self, path: &str) -> Response<Full<Bytes>> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let beh = self.behaviour.lock().unwrap().clone();
        let (status, body, delay) = if path.ends_with("/login") {
            self.logins.fetch_add(1, Ordering::SeqCst);
            (200, beh.login_body.clone(), beh.login_delay)
        } else {
            let n = self.reads.fetch_add(1, Ordering::SeqCst);
            let (s, v) = beh.reads[n.min(beh.reads.len() - 1)].clone();
            (s, v, beh.read_delay)
        };
        tokio::time::sleep(delay).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
        *resp.status_mut() = StatusCode::from_u16(status).unwrap();
        resp
    }
}

/// The class every fake-Vault case mounts: key `k` of `secret/data/app`, as file `k`.
pub fn class() -> Value {
    json!({"roleName": "app", "objects": "- {objectName: k, secretPath: secret/data/app, secretKey: k}"})
}

/// The set-up of every fake-Vault case: the server behaving as told, the provider in front
/// of it (with `flags` and environment `env`), and a driver-like client.
pub struct Case {
    pub vault: FakeVault,
    pub provider: super::ProviderProcess,
    pub client: super::Client,
}

impl Case {
    pub async fn start(b: Behaviour, flags: &[&str], env: &[(&str, &str)]) -> Case {
        let vault = FakeVault::start(b).await;
        let provider = super::ProviderProcess::start_env(&vault.addr, flags, env).await;
        let client = provider.client().await;
        Case {
            vault,
            provider,
            client,
        }
    }

    /// A Mount of [`class`] by a new pod of service account default/app.
    pub fn mount(
        &self,
    ) -> impl std::future::Future<
        Output = Result<vault_csi_provider::proto::MountResponse, tonic::Status>,
    > + Send
    + 'static {
        let client = self.client.clone();
        let req = super::Pod::new("default", "app").request(class());
        async move { client.mount(req).await }
    }
}
