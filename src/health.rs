//! `GET /health/ready`: 200 while the provider serves its sockets, 503 once it is shutting
//! down. Plain HTTP/1.1 on the `-health-addr` listener.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub async fn serve(listener: tokio::net::TcpListener, ready: Arc<AtomicBool>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let ready = ready.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let ready = ready.load(Ordering::SeqCst);
                async move {
                    Ok::<_, std::convert::Infallible>(answer(req.method(), req.uri().path(), ready))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn answer(method: &hyper::Method, path: &str, ready: bool) -> Response<Full<Bytes>> {
    let (status, body) = match (method, path) {
        (&hyper::Method::GET, "/health/ready") if ready => (StatusCode::OK, "ok\n"),
        (&hyper::Method::GET, "/health/ready") => {
            (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
        }
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp
}
