//! TLS to PostgreSQL: libpq's connection parameters read from the URL, connections made
//! with rustls (ring provider) through tokio-postgres-rustls.
//!
//! - `sslmode`: `disable`, `prefer`, `require`, `verify-ca` or `verify-full`. Without it
//!   connections are plain (`disable`), unlike libpq's default `prefer`: encryption is
//!   asked for, not picked up by chance from a server that happens to offer it.
//!   `prefer` encrypts when the server offers it; `require` always encrypts and does not
//!   check the certificate; `verify-ca` checks that a trusted CA signed it; `verify-full`
//!   also that it names the host of the URL (a DNS name or an IP address).
//! - `sslrootcert`: a PEM file of the CA certificates to trust; without it, the system's
//!   trust store (Mozilla's roots when the system has none). As in libpq, with a CA file
//!   `prefer` and `require` check the chain too (as `verify-ca`), and
//!   `sslrootcert=system` (the system's store) asks for `verify-full`.
//! - `sslcert` and `sslkey`: a client certificate (PEM) and its key, for servers that
//!   authenticate clients by certificate.
//!
//! tokio-postgres parses `sslmode` itself but knows only `disable`, `prefer` and
//! `require`, and refuses the other parameters: they are taken out of the URL here.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as PgSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The `sslmode` connection parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other}: must be one of disable, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }
}

/// Where a connection goes and how it is secured: the tokio-postgres configuration (the
/// URL without the TLS parameters) and the TLS connector both pools and the watchdog use.
#[derive(Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    /// The mode in effect (`require` with a CA file counts as `verify-ca`).
    pub ssl_mode: SslMode,
}

impl Target {
    /// Parses `url` and loads the files its TLS parameters name. Errors name the
    /// parameter (`sslmode=…`, `sslrootcert=…`) and never the URL (it may hold a
    /// password).
    pub fn from_url(url: &str) -> Result<Self, String> {
        let (rest, params) = take_tls_params(url)?;
        let mut config: tokio_postgres::Config = rest.parse().map_err(|e| format!("invalid PostgreSQL URL: {e}"))?;
        let roots = match params.rootcert.as_deref() {
            None => Roots::System,
            Some("system") => Roots::SystemRequested,
            Some(path) => Roots::File(path.to_owned()),
        };
        let mode = match (params.sslmode.as_deref().map(SslMode::parse).transpose()?, &roots) {
            (None, Roots::SystemRequested) => SslMode::VerifyFull,
            (Some(m), Roots::SystemRequested) if m != SslMode::VerifyFull => {
                return Err("sslrootcert=system: needs sslmode=verify-full".into());
            }
            (None, _) => SslMode::Disable,
            (Some(SslMode::Prefer | SslMode::Require), Roots::File(_)) => SslMode::VerifyCa,
            (Some(m), _) => m,
        };
        // A CA file given with sslmode=prefer keeps prefer's fallback to a plain connection.
        config.ssl_mode(match params.sslmode.as_deref() {
            _ if mode == SslMode::Disable => PgSslMode::Disable,
            Some("prefer") => PgSslMode::Prefer,
            _ => PgSslMode::Require,
        });
        let client = client_config(mode, &roots, &params)?;
        Ok(Target { config, tls: MakeRustlsConnect::new(client), ssl_mode: mode })
    }

    /// Opens one connection (its task spawned on the current runtime): for tools that
    /// want a client of their own on a URL with the same TLS parameters.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, conn) = self.config.connect(self.tls.clone()).await?;
        tokio::spawn(conn);
        Ok(client)
    }
}

/// Checks a PostgreSQL URL's TLS parameters and files (for configuration validation).
pub fn check_url(url: &str) -> Result<(), String> {
    Target::from_url(url).map(|_| ())
}

/// Opens one connection to `url`, with its TLS parameters (see the module).
pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let target = Target::from_url(url).map_err(anyhow::Error::msg)?;
    Ok(target.connect().await?)
}

#[derive(Default)]
struct TlsParams {
    sslmode: Option<String>,
    rootcert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
}

enum Roots {
    /// No `sslrootcert`: the system's store.
    System,
    /// `sslrootcert=system`.
    SystemRequested,
    File(String),
}

/// Takes the TLS parameters out of the URL's query (percent-decoded, `+` kept as libpq
/// keeps it); returns the rest.
fn take_tls_params(url: &str) -> Result<(String, TlsParams), String> {
    let Some((base, query)) = url.split_once('?') else { return Ok((url.to_owned(), TlsParams::default())) };
    let mut params = TlsParams::default();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match k {
            "sslmode" => &mut params.sslmode,
            "sslrootcert" => &mut params.rootcert,
            "sslcert" => &mut params.cert,
            "sslkey" => &mut params.key,
            _ => {
                kept.push(pair);
                continue;
            }
        };
        *slot = Some(percent_decode(v).ok_or_else(|| format!("{k}: not a valid percent-encoded value"))?);
    }
    let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((rest, params))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// ring: rustls' lighter provider to build (aws-lc-rs compiles a C library with CMake).
/// rustls 0.23.48 deprecates it for lacking post-quantum key exchange, accepted here for
/// connections to the deployment's own database servers.
#[allow(deprecated, reason = "ring is the chosen provider; see above")]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(mode: SslMode, roots: &Roots, params: &TlsParams) -> Result<ClientConfig, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match mode {
        // Not used for a connection, but the type is the same for every mode.
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            builder.dangerous().with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        }
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(root_store(roots)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| format!("sslrootcert: {e}"))?;
            if mode == SslMode::VerifyCa {
                builder.dangerous().with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
            } else {
                builder.with_webpki_verifier(webpki)
            }
        }
    };
    match (&params.cert, &params.key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let chain = read_certs("sslcert", cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("sslkey={key}: cannot read a key: {e}"))?;
            builder.with_client_auth_cert(chain, key).map_err(|e| format!("sslcert/sslkey: {e}"))
        }
        (Some(_), None) => Err("sslcert: needs sslkey (the certificate's private key)".into()),
        (None, Some(_)) => Err("sslkey: needs sslcert (the client certificate)".into()),
    }
}

fn read_certs(param: &str, path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    if !Path::new(path).is_file() {
        return Err(format!("{param}={path}: no such file"));
    }
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{param}={path}: cannot read certificates: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{param}={path}: no PEM certificate in it"));
    }
    Ok(certs)
}

fn root_store(roots: &Roots) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::File(path) => {
            let (added, _) = store.add_parsable_certificates(read_certs("sslrootcert", path)?);
            if added == 0 {
                return Err(format!("sslrootcert={path}: no usable CA certificate in it"));
            }
        }
        Roots::System | Roots::SystemRequested => {
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            if store.is_empty() {
                store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
        }
    }
    Ok(store)
}

/// `require` (and `prefer`): encrypted, the certificate not checked (libpq's meaning);
/// the handshake's signatures still are.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted CA; the names in the certificate are
/// not compared with the host (webpki checks the chain before the name, so a name
/// mismatch means the chain was good).
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
        match self.0.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mode(url: &str) -> Result<(SslMode, PgSslMode), String> {
        Target::from_url(url).map(|t| (t.ssl_mode, t.config.get_ssl_mode()))
    }

    #[test]
    fn sslmode_is_read_from_the_url_and_plain_by_default() {
        let base = "postgres://u:pw@db.example:5432/hermet";
        assert_eq!(mode(base).unwrap(), (SslMode::Disable, PgSslMode::Disable));
        assert_eq!(mode(&format!("{base}?sslmode=disable")).unwrap(), (SslMode::Disable, PgSslMode::Disable));
        assert_eq!(mode(&format!("{base}?sslmode=prefer")).unwrap(), (SslMode::Prefer, PgSslMode::Prefer));
        assert_eq!(mode(&format!("{base}?sslmode=require")).unwrap(), (SslMode::Require, PgSslMode::Require));
        assert_eq!(
            mode(&format!("{base}?application_name=x&sslmode=verify-full")).unwrap(),
            (SslMode::VerifyFull, PgSslMode::Require)
        );
        assert_eq!(mode(&format!("{base}?sslmode=verify-ca")).unwrap(), (SslMode::VerifyCa, PgSslMode::Require));
        assert_eq!(mode(&format!("{base}?sslrootcert=system")).unwrap(), (SslMode::VerifyFull, PgSslMode::Require));
        let t = Target::from_url(&format!("{base}?sslmode=require&application_name=x")).unwrap();
        assert_eq!(t.config.get_application_name(), Some("x"));
    }

    #[test]
    fn bad_parameters_are_named() {
        let base = "postgres://u:pw@db/hermet";
        let e = mode(&format!("{base}?sslmode=verify-all")).unwrap_err();
        assert!(e.starts_with("sslmode=verify-all: must be one of"), "{e}");
        let e = mode(&format!("{base}?sslmode=verify-full&sslrootcert=%2Fno%2Fsuch%2Fca+1.pem")).unwrap_err();
        assert_eq!(e, "sslrootcert=/no/such/ca+1.pem: no such file");
        let e = mode(&format!("{base}?sslmode=require&sslrootcert=system")).unwrap_err();
        assert!(e.starts_with("sslrootcert=system"), "{e}");
        let e = mode(&format!("{base}?sslcert=/tmp/c.pem")).unwrap_err();
        assert!(e.starts_with("sslcert: needs sslkey"), "{e}");
        let e = mode("postgres://u:pw@db/hermet?sslmode=require&bogus=1").unwrap_err();
        assert!(!e.contains("pw"), "{e}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("hermet-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let e = mode(&format!("postgres://db/h?sslmode=verify-ca&sslrootcert={}", path.display())).unwrap_err();
        assert!(e.contains("no PEM certificate"), "{e}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
