//! The rustls client configuration for each `sslmode`.
//!
//! | mode | TLS | chain verified | host name verified |
//! |---|---|---|---|
//! | `disable` | never | – | – |
//! | `prefer` | if the server offers it | only with a CA given | no |
//! | `require` | always | only with a CA given (as libpq) | no |
//! | `verify-ca` | always | yes | no |
//! | `verify-full` | always | yes | yes |
//!
//! Without `ssl_root_ca_cert`, `verify-ca` and `verify-full` use the system's
//! CA store. Certificates and keys come from [`PemSource`]s (inline PEM or a
//! file); an error names the setting whose material is wrong.
//!
//! Even when the certificate is not verified, the handshake signatures are,
//! so the connection is still encrypted to whoever holds the presented key.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{PemSource, SslConfig, SslMode};
use crate::{Error, ErrorKind};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the TLS connector for `ssl`. For `disable` it is still returned
/// (tokio-postgres wants one type) but never used.
pub fn make_tls_connect(ssl: &SslConfig) -> Result<MakeRustlsConnect, Error> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::with_source(ErrorKind::Tls, "tls: no usable protocol version", e))?;

    let verify_chain = matches!(ssl.mode, SslMode::VerifyCa | SslMode::VerifyFull)
        || (ssl.root_cert.is_some() && ssl.mode != SslMode::Disable);
    let builder = if !verify_chain {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertificateCheck(provider)))
    } else {
        let roots = Arc::new(root_store(
            ssl.root_cert.as_ref().unwrap_or(&PemSource::System),
        )?);
        if ssl.mode == SslMode::VerifyFull {
            builder.with_root_certificates(roots)
        } else {
            let inner = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| {
                    Error::with_source(ErrorKind::Tls, "`ssl_root_ca_cert`: unusable CA set", e)
                })?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
        }
    };

    let config = match (&ssl.client_cert, &ssl.client_key) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert, "ssl_client_certificate")?;
            let key = private_key(key)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                Error::with_source(
                    ErrorKind::Config,
                    format!("`ssl_client_key` does not match `ssl_client_certificate`: {e}"),
                    e,
                )
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

fn read_pem(source: &PemSource, key: &str) -> Result<Vec<u8>, Error> {
    match source {
        PemSource::Inline(s) => Ok(s.as_bytes().to_vec()),
        PemSource::Path(p) => std::fs::read(p).map_err(|e| {
            Error::with_source(
                ErrorKind::Config,
                format!("`{key}`: cannot read {}: {e}", p.display()),
                e,
            )
        }),
        PemSource::System => Err(Error::config(format!(
            "`{key}`: `system` only makes sense for the CA certificate"
        ))),
    }
}

fn certificates(source: &PemSource, key: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = read_pem(source, key)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::config(format!("`{key}`: invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::config(format!(
            "`{key}`: no `-----BEGIN CERTIFICATE-----` block found"
        )));
    }
    Ok(certs)
}

fn private_key(source: &PemSource) -> Result<PrivateKeyDer<'static>, Error> {
    let pem = read_pem(source, "ssl_client_key")?;
    if String::from_utf8_lossy(&pem).contains("ENCRYPTED PRIVATE KEY") {
        return Err(Error::config(
            "`ssl_client_key`: encrypted keys are not supported; decrypt it once with \
             `openssl pkey -in key.pem -out key-plain.pem`",
        ));
    }
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        Error::config(format!(
            "`ssl_client_key`: no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"
        ))
    })
}

fn root_store(source: &PemSource) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    match source {
        PemSource::System => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A malformed certificate in the system store is not ours to fix.
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err(Error::config(
                    "no CA certificates in the system store: set `ssl_root_ca_cert` \
                     to the server's CA certificate (a path or inline PEM)",
                ));
            }
        }
        other => {
            for cert in certificates(other, "ssl_root_ca_cert")? {
                store.add(cert).map_err(|e| {
                    Error::config(format!("`ssl_root_ca_cert`: unusable certificate: {e}"))
                })?;
            }
        }
    }
    Ok(store)
}

/// `prefer`/`require` without a CA: any certificate is accepted, handshake
/// signatures are still checked.
#[derive(Debug)]
struct NoCertificateCheck(Arc<CryptoProvider>);

impl ServerCertVerifier for NoCertificateCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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
        verify_tls12_signature(
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
        verify_tls13_signature(
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

/// `verify-ca`: the full WebPKI check except the host name.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
