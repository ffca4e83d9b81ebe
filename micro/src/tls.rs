//! TLS (cargo feature `tls`): HTTPS and WSS for services and clients, with
//! rustls on ring, and mutual TLS as an option.
//!
//! A service serves TLS with [`Service::tls`](crate::Service::tls) or the
//! settings `MICRO_SERVER_TLS_CERT` and `MICRO_SERVER_TLS_KEY` (PEM files);
//! `MICRO_SERVER_TLS_CLIENT_CA` (or [`ServerTls::client_ca`]) asks every
//! client for a certificate signed by that CA. A client speaks TLS with
//! [`ClientBuilder::tls`](crate::client::ClientBuilder::tls), verifying
//! servers against a CA file or the system's roots, and presenting a
//! certificate of its own for mutual TLS.
//!
//! Under mutual TLS the client certificate's subject common name is an
//! identity the auth rules see: a call without a token counts as the
//! service account `<common name>` with the scopes `mtls` and
//! `mtls:<common name>`.
//!
//! Plain HTTP stays the default.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::Error;

/// The TLS of a server: its certificate chain and key, and, for mutual
/// TLS, the CA client certificates must be signed by.
#[derive(Clone, Debug)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
}

/// The crypto provider of every config: ring, named here so that no
/// process-wide default is needed.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> crate::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect)
        .map_err(|e| Error::internal(format!("certificates in {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::internal(format!(
            "no PEM certificate in {}",
            path.display()
        )));
    }
    Ok(certs)
}

fn key(path: &Path) -> crate::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| Error::internal(format!("the private key in {}: {e}", path.display())))
}

fn roots(path: &Path) -> crate::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(path)? {
        roots
            .add(cert)
            .map_err(|e| Error::internal(format!("a CA certificate in {}: {e}", path.display())))?;
    }
    Ok(roots)
}

impl ServerTls {
    /// TLS with the certificate chain in `cert` and the key in `key` (PEM).
    ///
    /// # Errors
    /// 500 if a file cannot be read or does not hold what it should.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> crate::Result<Self> {
        Self::build(cert.as_ref(), key.as_ref(), None)
    }

    /// The same, asking every client for a certificate signed by the CA in
    /// `ca` (PEM): mutual TLS. A client without one is refused in the
    /// handshake.
    ///
    /// # Errors
    /// 500 if a file cannot be read or does not hold what it should.
    pub fn client_ca(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
        ca: impl AsRef<Path>,
    ) -> crate::Result<Self> {
        Self::build(cert.as_ref(), key.as_ref(), Some(ca.as_ref()))
    }

    fn build(cert: &Path, key_file: &Path, ca: Option<&Path>) -> crate::Result<Self> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::internal(format!("TLS: {e}")))?;
        let builder = match ca {
            Some(ca) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(ca)?),
                    provider(),
                )
                .build()
                .map_err(|e| Error::internal(format!("TLS client CA {}: {e}", ca.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs(cert)?, key(key_file)?)
            .map_err(|e| Error::internal(format!("TLS certificate {}: {e}", cert.display())))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// From the settings: `MICRO_SERVER_TLS_CERT` and `MICRO_SERVER_TLS_KEY`,
    /// and `MICRO_SERVER_TLS_CLIENT_CA` for mutual TLS; none when the
    /// certificate is not set.
    ///
    /// # Errors
    /// One of the two set without the other, or a file that does not load.
    pub(crate) fn from_settings(
        var: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> crate::Result<Option<Self>> {
        match (var("MICRO_SERVER_TLS_CERT"), var("MICRO_SERVER_TLS_KEY")) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => match var("MICRO_SERVER_TLS_CLIENT_CA") {
                Some(ca) => Self::client_ca(cert, key, ca).map(Some),
                None => Self::from_pem_files(cert, key).map(Some),
            },
            _ => Err(Error::internal(
                "set both MICRO_SERVER_TLS_CERT and MICRO_SERVER_TLS_KEY, or neither",
            )),
        }
    }

    pub(crate) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

/// The TLS of a client: the roots it verifies servers against, and its own
/// certificate for mutual TLS.
#[derive(Clone, Debug)]
pub struct ClientTls {
    roots: rustls::RootCertStore,
    identity: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
}

impl ClientTls {
    /// Verifies servers against the CA certificates in `ca` (PEM).
    ///
    /// # Errors
    /// 500 if the file cannot be read or holds no certificate.
    pub fn ca_file(ca: impl AsRef<Path>) -> crate::Result<Self> {
        Ok(Self {
            roots: roots(ca.as_ref())?,
            identity: None,
        })
    }

    /// Verifies servers against the system's root certificates.
    ///
    /// # Errors
    /// 500 if none can be loaded.
    pub fn system_roots() -> crate::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(Error::internal(format!(
                "no system root certificates could be loaded: {:?}",
                found.errors
            )));
        }
        Ok(Self {
            roots,
            identity: None,
        })
    }

    /// Presents the certificate chain in `cert` with the key in `key` (PEM)
    /// to servers that ask: mutual TLS.
    ///
    /// # Errors
    /// 500 if a file cannot be read.
    pub fn with_identity(
        mut self,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> crate::Result<Self> {
        self.identity = Some((certs(cert.as_ref())?, Arc::new(self::key(key.as_ref())?)));
        Ok(self)
    }

    pub(crate) fn config(&self) -> crate::Result<rustls::ClientConfig> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::internal(format!("TLS: {e}")))?
            .with_root_certificates(self.roots.clone());
        // ALPN is the connector's to set.
        let config = match &self.identity {
            Some((certs, key)) => builder
                .with_client_auth_cert(certs.clone(), key.clone_key())
                .map_err(|e| Error::internal(format!("TLS client certificate: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        Ok(config)
    }
}

/// The subject common name of a DER certificate, if it has one.
pub(crate) fn common_name(der: &[u8]) -> Option<String> {
    // Certificate ::= SEQUENCE { tbsCertificate, .. }; TBSCertificate ::=
    // SEQUENCE { [0] version OPTIONAL, serial, signature, issuer,
    // validity, subject, .. }.
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    let mut fields = Vec::new();
    while !rest.is_empty() && fields.len() < 6 {
        let (tag, value, after) = tlv(rest)?;
        fields.push((tag, value));
        rest = after;
    }
    let offset = usize::from(fields.first()?.0 == 0xa0);
    let (_, subject) = *fields.get(offset + 4)?;
    // Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value }.
    let mut rdns = subject;
    while !rdns.is_empty() {
        let (_, set, after) = tlv(rdns)?;
        rdns = after;
        let mut attrs = set;
        while !attrs.is_empty() {
            let (_, attr, next) = tlv(attrs)?;
            attrs = next;
            let (tag, oid, value) = tlv(attr)?;
            if tag == 0x06 && oid == [0x55, 0x04, 0x03] {
                let (_, text, _) = tlv(value)?;
                return String::from_utf8(text.to_vec()).ok();
            }
        }
    }
    None
}

/// One DER tag-length-value: the tag, the value, and what follows.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let value = input.get(head..head + len)?;
    Some((tag, value, &input[head + len..]))
}
