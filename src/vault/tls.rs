//! TLS to Vault with rustls (ring): CA file or directory (the file wins), system roots
//! otherwise, a server name to verify instead of the host, a client certificate, and
//! skip-verify.

use super::VaultError;
use crate::settings::TlsSettings;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

fn setup(msg: String) -> VaultError {
    VaultError::Setup(msg)
}

/// Makes ring the process-wide rustls provider (reqwest asks for one even when handed a
/// ready configuration). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The rustls configuration for one TLS setting.
pub fn client_config(tls: &TlsSettings) -> Result<rustls::ClientConfig, VaultError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(format!("TLS: {e}")))?;

    let verifier: Arc<dyn ServerCertVerifier> = if tls.skip_verify {
        Arc::new(NoVerification(provider))
    } else {
        let roots = Arc::new(roots(tls)?);
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| setup(format!("TLS: {e}")))?;
        match &tls.server_name {
            Some(name) => {
                let name = ServerName::try_from(name.clone()).map_err(|_| {
                    setup(format!(
                        "TLS server name {name:?} is not a DNS name or IP address"
                    ))
                })?;
                Arc::new(NameOverride {
                    inner: webpki,
                    name,
                })
            }
            None => webpki,
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let certs = read_certs(cert, "client certificate")?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| setup(format!("reading client key {}: {e}", key.display())))?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                setup(format!(
                    "client certificate and key do not fit together: {e}"
                ))
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(setup(
                "a client certificate needs both a certificate and a key file".into(),
            ));
        }
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, VaultError> {
    let bytes = std::fs::read(path)
        .map_err(|e| setup(format!("reading {what} {}: {e}", path.display())))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| setup(format!("{what} {} is not PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(setup(format!(
            "{what} {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

fn roots(tls: &TlsSettings) -> Result<RootCertStore, VaultError> {
    let mut store = RootCertStore::empty();
    let certs = if let Some(file) = &tls.ca_cert {
        read_certs(file, "CA file")?
    } else if let Some(dir) = &tls.ca_directory {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| setup(format!("reading CA directory {}: {e}", dir.display())))?;
        let mut certs = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file()
                && let Ok(bytes) = std::fs::read(&path)
            {
                certs.extend(CertificateDer::pem_slice_iter(&bytes).filter_map(Result::ok));
            }
        }
        if certs.is_empty() {
            return Err(setup(format!(
                "CA directory {} holds no PEM certificate",
                dir.display()
            )));
        }
        certs
    } else {
        rustls_native_certs::load_native_certs().certs
    };
    for cert in certs {
        store
            .add(cert)
            .map_err(|e| setup(format!("a CA certificate cannot be used: {e}")))?;
    }
    Ok(store)
}

/// Verifies the certificate against a configured name instead of the connection's host.
#[derive(Debug)]
struct NameOverride {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NameOverride {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Skip-verify: any certificate is accepted, handshake signatures are still checked.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
