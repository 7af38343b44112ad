//! TLS client configuration with rustls (ring), shared by the Vault and Kubernetes clients:
//! CA certificates (or the system roots), a server name to verify instead of the host, a
//! client certificate, and skip-verify.

use crate::settings::TlsSettings;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// Where trusted CA certificates come from.
pub enum Roots {
    System,
    Certs(Vec<CertificateDer<'static>>),
}

/// A client identity for mutual TLS.
pub struct ClientIdentity {
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Makes ring the process-wide rustls provider (reqwest asks for one even when handed a
/// ready configuration). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The system's trusted roots, read once (blocking: first used off the async runtime).
static SYSTEM_ROOTS: std::sync::LazyLock<Arc<RootCertStore>> = std::sync::LazyLock::new(|| {
    let mut store = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = store.add(cert);
    }
    Arc::new(store)
});

/// Largest TLS file (CA bundle, certificate, key) accepted.
pub const MAX_TLS_FILE: u64 = 1024 * 1024;
/// Most files read from a CA directory, and most bytes in all of them.
const MAX_CA_DIR_FILES: usize = 256;
const MAX_CA_DIR_BYTES: u64 = 4 * 1024 * 1024;

/// What identifies a file's content on disk: device, inode, size and modification time.
pub type Stamp = (u64, u64, u64, i64, i64);

/// Stamps of the files a TLS setting names, so that a changed CA file makes a new client.
/// Blocking (it stats files): call off the async runtime.
pub fn stamps(tls: &TlsSettings) -> Vec<Option<Stamp>> {
    use std::os::unix::fs::MetadataExt;
    [
        &tls.ca_cert,
        &tls.ca_directory,
        &tls.client_cert,
        &tls.client_key,
    ]
    .iter()
    .map(|p| {
        p.as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map(|m| (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
    })
    .collect()
}

/// Whether a TLS setting names files at all.
pub fn names_files(tls: &TlsSettings) -> bool {
    tls.ca_cert.is_some()
        || tls.ca_directory.is_some()
        || tls.client_cert.is_some()
        || tls.client_key.is_some()
}

/// Reads a file a tenant named, safely: opened without blocking (a FIFO cannot hang us),
/// a regular file only (not a device such as /dev/zero), at most `max` bytes. Blocking: call
/// off the async runtime. Errors name the file, never its content.
pub fn read_named_file(path: &Path, what: &str, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = || crate::text::quote(&path.to_string_lossy());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("reading {what} {}: {e}", shown()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("reading {what} {}: {e}", shown()))?;
    if !meta.is_file() {
        return Err(format!("{what} {} is not a regular file", shown()));
    }
    if meta.len() > max {
        return Err(format!(
            "{what} {} is {} bytes, more than the {max} allowed",
            shown(),
            meta.len()
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading {what} {}: {e}", shown()))?;
    if bytes.len() as u64 > max {
        return Err(format!("{what} {} grew past {max} bytes", shown()));
    }
    Ok(bytes)
}

/// The rustls configuration for Vault from one TLS setting, reading the files it names
/// (bounded, see [`read_named_file`]). Blocking: call off the async runtime.
pub fn client_config(tls: &TlsSettings) -> Result<rustls::ClientConfig, String> {
    let roots = if let Some(file) = &tls.ca_cert {
        let pem = read_named_file(file, "CA file (vaultCACertPath)", MAX_TLS_FILE)?;
        Roots::Certs(certs_from_pem(
            &pem,
            &format!("CA file {}", crate::text::quote(&file.to_string_lossy())),
        )?)
    } else if let Some(dir) = &tls.ca_directory {
        Roots::Certs(read_cert_dir(dir)?)
    } else {
        Roots::System
    };
    let identity = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let cert_pem = read_named_file(cert, "client certificate", MAX_TLS_FILE)?;
            let key_pem =
                zeroize::Zeroizing::new(read_named_file(key, "client key", MAX_TLS_FILE)?);
            let shown = |p: &Path| crate::text::quote(&p.to_string_lossy());
            Some(ClientIdentity {
                certs: certs_from_pem(&cert_pem, &format!("client certificate {}", shown(cert)))?,
                key: PrivateKeyDer::from_pem_slice(&key_pem)
                    .map_err(|_| format!("client key {} is not a PEM private key", shown(key)))?,
            })
        }
        (None, None) => None,
        _ => return Err("a client certificate needs both a certificate and a key file".into()),
    };
    build(roots, tls.server_name.as_deref(), identity, tls.skip_verify)
}

/// Parses PEM certificates from memory.
pub fn certs_from_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} is not PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what} holds no certificate"));
    }
    Ok(certs)
}

/// A rustls client configuration offering HTTP/2 and HTTP/1.1.
pub fn build(
    roots: Roots,
    server_name: Option<&str>,
    identity: Option<ClientIdentity>,
    skip_verify: bool,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = if skip_verify {
        Arc::new(NoVerification(provider))
    } else {
        let store = match roots {
            // Read once and shared by every client that trusts the system's roots.
            Roots::System => SYSTEM_ROOTS.clone(),
            Roots::Certs(certs) => {
                let mut store = RootCertStore::empty();
                for cert in certs {
                    store
                        .add(cert)
                        .map_err(|e| format!("a CA certificate cannot be used: {e}"))?;
                }
                Arc::new(store)
            }
        };
        let webpki = WebPkiServerVerifier::builder_with_provider(store, provider)
            .build()
            .map_err(|e| format!("TLS: {e}"))?;
        match server_name {
            Some(name) => {
                let name = ServerName::try_from(name.to_string()).map_err(|_| {
                    format!(
                        "TLS server name {} is not a DNS name or IP address",
                        crate::text::quote(name)
                    )
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
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.certs, id.key)
            .map_err(|e| format!("client certificate and key do not fit together: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn read_cert_dir(dir: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = crate::text::quote(&dir.to_string_lossy());
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("reading CA directory {shown}: {e}"))?;
    let mut certs = Vec::new();
    let mut total = 0u64;
    for entry in entries.flatten().take(MAX_CA_DIR_FILES) {
        let path = entry.path();
        // Only regular files (not followed symlinks to devices), each and all bounded.
        if !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let Ok(bytes) = read_named_file(&path, "CA file", MAX_TLS_FILE) else {
            continue;
        };
        total += bytes.len() as u64;
        if total > MAX_CA_DIR_BYTES {
            return Err(format!(
                "CA directory {shown} holds more than {MAX_CA_DIR_BYTES} bytes of files"
            ));
        }
        certs.extend(CertificateDer::pem_slice_iter(&bytes).filter_map(Result::ok));
    }
    if certs.is_empty() {
        return Err(format!("CA directory {shown} holds no PEM certificate"));
    }
    Ok(certs)
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
