//! Service-account tokens signed RS256 with the test key, carrying the claims a cluster
//! puts in them.

use base64::Engine;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::signature::{SignatureEncoding, Signer, Verifier};
use serde_json::{Value, json};
use sha2::Sha256;
use std::sync::OnceLock;

pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

pub fn public_key_pem() -> &'static str {
    include_str!("../fixtures/sa-signer.pub")
}

fn signing_key() -> &'static SigningKey<Sha256> {
    static KEY: OnceLock<SigningKey<Sha256>> = OnceLock::new();
    KEY.get_or_init(|| {
        let key =
            rsa::RsaPrivateKey::from_pkcs8_pem(include_str!("../fixtures/sa-signer.key")).unwrap();
        SigningKey::<Sha256>::new(key)
    })
}

fn verifying_key() -> &'static VerifyingKey<Sha256> {
    static KEY: OnceLock<VerifyingKey<Sha256>> = OnceLock::new();
    KEY.get_or_init(|| {
        let key = rsa::RsaPublicKey::from_public_key_pem(public_key_pem()).unwrap();
        VerifyingKey::<Sha256>::new(key)
    })
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub struct Claims {
    pub namespace: String,
    pub service_account: String,
    pub sa_uid: String,
    pub pod_name: String,
    pub pod_uid: String,
    pub audience: String,
    pub expires: i64,
}

impl Claims {
    pub fn for_pod(pod: &super::Pod, audience: &str) -> Claims {
        Claims {
            namespace: pod.namespace.clone(),
            service_account: pod.service_account.clone(),
            sa_uid: format!("sa-uid-{}", pod.service_account),
            pod_name: pod.name.clone(),
            pod_uid: pod.uid.clone(),
            audience: audience.into(),
            expires: now() + 3600,
        }
    }
}

pub fn sign(c: &Claims) -> String {
    let header = json!({"alg": "RS256", "kid": "test-key", "typ": "JWT"});
    let iat = now() - 5;
    let payload = json!({
        "iss": ISSUER,
        "sub": format!("system:serviceaccount:{}:{}", c.namespace, c.service_account),
        "aud": [c.audience],
        "exp": c.expires,
        "iat": iat,
        "nbf": iat,
        "kubernetes.io": {
            "namespace": c.namespace,
            "serviceaccount": {"name": c.service_account, "uid": c.sa_uid},
            "pod": {"name": c.pod_name, "uid": c.pod_uid},
        },
    });
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    let sig: Signature = signing_key().sign(signing_input.as_bytes());
    format!("{signing_input}.{}", b64(&sig.to_bytes()))
}

/// Verifies signature and expiry; returns the claims.
pub fn verify(jwt: &str) -> Result<Value, String> {
    let mut parts = jwt.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed token".into());
    };
    let sig_bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| "bad signature encoding")?;
    let sig = Signature::try_from(sig_bytes.as_slice()).map_err(|_| "bad signature")?;
    verifying_key()
        .verify(format!("{h}.{p}").as_bytes(), &sig)
        .map_err(|_| "invalid signature".to_string())?;
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| "bad payload encoding")?,
    )
    .map_err(|_| "bad payload")?;
    if claims["exp"].as_i64().unwrap_or(0) < now() {
        return Err("token has expired".into());
    }
    Ok(claims)
}
