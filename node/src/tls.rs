//! rustls configs from the node's PEM files: the data listener's (`node.tls`),
//! the admin listener's and the client config node-to-node calls use
//! (`node.admin_tls`). Everything uses ring, like the rest of the tree.

use cluster_config::{AdminTls, TlsFiles};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{Error, ErrorKind};
use std::path::Path;
use std::sync::Arc;

fn bad(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidData, format!("{}: {e}", path.display()))
}

fn certs(path: &Path) -> std::io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(path, e))?;
    if certs.is_empty() {
        return Err(bad(path, "no certificate found"));
    }
    Ok(certs)
}

fn key(path: &Path) -> std::io::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| bad(path, e))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_file: &Path) -> std::io::Result<Arc<rustls::RootCertStore>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(ca_file)? {
        roots.add(cert).map_err(|e| bad(ca_file, e))?;
    }
    Ok(Arc::new(roots))
}

/// A listener's config: `files`' chain and key; with `client_ca`, a client must
/// present a certificate that CA verifies.
pub fn server_config(
    files: &TlsFiles,
    client_ca: Option<&Path>,
) -> std::io::Result<rustls::ServerConfig> {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorKind::InvalidData, format!("TLS config: {e}")))?;
    let builder = match client_ca {
        Some(ca) => {
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots(ca)?, provider())
                    .build()
                    .map_err(|e| bad(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(certs(&files.cert_file)?, key(&files.key_file)?)
        .map_err(|e| Error::new(ErrorKind::InvalidData, format!("TLS config: {e}")))
}

/// The admin listener's config (`node.admin_tls`).
pub fn admin_server_config(tls: &AdminTls) -> std::io::Result<rustls::ServerConfig> {
    server_config(&tls.files, tls.client_auth.then_some(tls.ca_file.as_path()))
}

/// What this node calls its peers with: their certificates checked against the
/// cluster CA; this node's own certificate presented when listeners require one.
pub fn peer_client_config(tls: &AdminTls) -> std::io::Result<rustls::ClientConfig> {
    client_config(&tls.ca_file, tls.client_auth.then_some(&tls.files))
}

/// A client that trusts `ca_file` and, with `identity`, presents that certificate.
pub fn client_config(
    ca_file: &Path,
    identity: Option<&TlsFiles>,
) -> std::io::Result<rustls::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorKind::InvalidData, format!("TLS config: {e}")))?
        .with_root_certificates(roots(ca_file)?);
    match identity {
        Some(files) => builder
            .with_client_auth_cert(certs(&files.cert_file)?, key(&files.key_file)?)
            .map_err(|e| bad(&files.cert_file, e)),
        None => Ok(builder.with_no_client_auth()),
    }
}

/// What the proxy verifies `https://` upstreams with: the public web roots and,
/// with `node.upstream_ca_file`, the certificates in it. No client certificate.
pub fn upstream_client_config(extra_ca: Option<&Path>) -> std::io::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(ca_file) = extra_ca {
        for cert in certs(ca_file)? {
            roots.add(cert).map_err(|e| bad(ca_file, e))?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorKind::InvalidData, format!("TLS config: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
