//! TLS for both ends of Shoal's gRPC connections, with rustls.
//!
//! - [`ServerTls`]: a node's side. The node terminates TLS itself (see
//!   [`crate::runtime::serve_grpc`]) so that [`ServerTls::reload`] can swap
//!   certificates on a running node: each new connection is accepted with the
//!   configuration current at that moment; connections already open keep
//!   theirs. Client certificates are verified against the cluster CA when
//!   presented, and required when the node says so.
//! - [`ClientTls`]: a caller's side (clients, and nodes dialling peers): the
//!   CA that server certificates must chain to, and optionally a certificate
//!   of its own.
//! - [`certificate_name`]: the name an authenticated caller goes by.
//! - [`dev_certificates`]: a throw-away CA and certificates for a local
//!   cluster.
//!
//! TLS is a transport setting: the simulator's network has no TLS, so the
//! simulation runs the same node code without it, and TLS is tested in real
//! mode.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tonic_tls::transport::{Certificate, ClientTlsConfig, Identity};

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM item of the expected kind.
    #[error("{path}: no {what} in PEM form")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was looked for.
        what: &'static str,
    },
    /// rustls refused the material (a key not matching its certificate, say).
    #[error("TLS configuration refused: {0}")]
    Config(String),
    /// A `--dev` certificate could not be made.
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
}

/// Where a party's TLS material lives: the CA certificates it trusts, and
/// its own certificate and private key (PEM files, etcd's `--cacert`,
/// `--cert` and `--key`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// CA certificates: the peers' and callers' certificates must chain to one.
    pub cacert: Option<PathBuf>,
    /// This party's certificate chain.
    pub cert: Option<PathBuf>,
    /// The private key of `cert`.
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    /// Whether any TLS file is given (then TLS is on).
    pub fn any(&self) -> bool {
        self.cacert.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// The certificate chain and key, as PEM bytes, if given.
    fn identity(&self) -> Result<Option<PemIdentity>, TlsError> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some((read(cert)?, read(key)?))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(TlsError::Config("--cert needs --key".into())),
            (None, Some(_)) => Err(TlsError::Config("--key needs --cert".into())),
        }
    }
}

/// A certificate chain and its private key, as PEM bytes.
type PemIdentity = (Vec<u8>, Vec<u8>);

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A node's TLS: the configuration new connections are accepted with.
pub struct ServerTls {
    files: TlsFiles,
    client_cert_required: bool,
    current: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("files", &self.files)
            .field("client_cert_required", &self.client_cert_required)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads `files` (all three needed). Callers' certificates must chain
    /// to `cacert` when presented; with `client_cert_required`, a caller
    /// without one is refused at the handshake.
    pub fn load(files: &TlsFiles, client_cert_required: bool) -> Result<ServerTls, TlsError> {
        let config = server_config(files, client_cert_required)?;
        Ok(ServerTls {
            files: files.clone(),
            client_cert_required,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Reads the files again; new connections use what they hold now. On
    /// an error the previous configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files, self.client_cert_required)?;
        *self.current.write().expect("tls lock") = Arc::new(config);
        Ok(())
    }

    /// An acceptor for one new connection.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.read().expect("tls lock").clone())
    }
}

fn server_config(files: &TlsFiles, client_cert_required: bool) -> Result<ServerConfig, TlsError> {
    let (Some(cacert), Some((cert_pem, key_pem))) = (&files.cacert, files.identity()?) else {
        return Err(TlsError::Config(
            "a node's TLS needs cacert, cert and key".into(),
        ));
    };
    let cert = files.cert.as_deref().expect("identity read it");
    let key = files.key.as_deref().expect("identity read it");
    let mut roots = RootCertStore::empty();
    for ca in certificates(cacert, &read(cacert)?)? {
        roots
            .add(ca)
            .map_err(|e| TlsError::Config(format!("{}: {e}", cacert.display())))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    let verifier = if client_cert_required {
        verifier
    } else {
        verifier.allow_unauthenticated()
    }
    .build()
    .map_err(|e| TlsError::Config(e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::Pem {
        path: key.to_path_buf(),
        what: "private key",
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(cert, &cert_pem)?, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A caller's TLS: what new connections are made with.
pub struct ClientTls {
    files: TlsFiles,
    current: RwLock<ClientTlsConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Loads `files`: `cacert` is needed; `cert` and `key` give the caller
    /// a certificate of its own.
    pub fn load(files: &TlsFiles) -> Result<ClientTls, TlsError> {
        Ok(ClientTls {
            current: RwLock::new(client_config(files)?),
            files: files.clone(),
        })
    }

    /// Reads the files again, for connections made from now on.
    pub fn reload(&self) -> Result<(), TlsError> {
        *self.current.write().expect("tls lock") = client_config(&self.files)?;
        Ok(())
    }

    /// The configuration for a new connection.
    pub fn config(&self) -> ClientTlsConfig {
        self.current.read().expect("tls lock").clone()
    }
}

fn client_config(files: &TlsFiles) -> Result<ClientTlsConfig, TlsError> {
    let Some(cacert) = &files.cacert else {
        return Err(TlsError::Config(
            "TLS needs --cacert, the CA that servers' certificates chain to".into(),
        ));
    };
    let ca = read(cacert)?;
    certificates(cacert, &ca)?;
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert, key)) = files.identity()? {
        config = config.identity(Identity::from_pem(cert, key));
    }
    Ok(config)
}

/// The name a certificate gives its holder: its subject's common name, or
/// else its first DNS name.
pub fn certificate_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    if let Some(cn) = cert
        .subject()
        .iter_common_name()
        .find_map(|cn| cn.as_str().ok())
    {
        return Some(cn.to_string());
    }
    let san = cert.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
        _ => None,
    })
}

/// The files [`dev_certificates`] writes, relative to its directory.
pub mod dev {
    /// The throw-away CA.
    pub const CA: &str = "ca.pem";
    /// The nodes' certificate and key (name [`NODE_NAME`]).
    pub const NODE: (&str, &str) = ("node.pem", "node-key.pem");
    /// An administrator's certificate and key (name [`ADMIN_NAME`]).
    pub const ADMIN: (&str, &str) = ("admin.pem", "admin-key.pem");
    /// An ordinary client's certificate and key (name `client`).
    pub const CLIENT: (&str, &str) = ("client.pem", "client-key.pem");
    /// The name in the nodes' certificate.
    pub const NODE_NAME: &str = "shoal-node";
    /// The name in the administrator's certificate.
    pub const ADMIN_NAME: &str = "admin";
}

/// Writes a new CA and, signed by it, a certificate for the nodes (valid
/// for `localhost` and 127.0.0.1), one for an administrator and one for an
/// ordinary client into `dir` (see [`dev`] for the names). For trying TLS
/// on one machine, never for production.
pub fn dev_certificates(dir: &Path) -> Result<(), TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    };
    let fail = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let named = |name: &str, sans: Vec<String>| -> Result<CertificateParams, TlsError> {
        let mut params = CertificateParams::new(sans).map_err(fail)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        Ok(params)
    };
    // Private keys readable by their owner only.
    let write = |name: &str, contents: String| -> Result<(), TlsError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join(name);
        let mode = if name.ends_with("-key.pem") {
            0o600
        } else {
            0o644
        };
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&path)
            .and_then(|mut file| file.write_all(contents.as_bytes()))
            .map_err(|source| TlsError::Read { path, source })
    };
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut ca = named("shoal dev CA", Vec::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().map_err(fail)?;
    write(dev::CA, ca.self_signed(&ca_key).map_err(fail)?.pem())?;
    let issuer = Issuer::new(ca, ca_key);
    let leaves = [
        (
            dev::NODE,
            dev::NODE_NAME,
            vec!["localhost".into(), "127.0.0.1".into()],
        ),
        (dev::ADMIN, dev::ADMIN_NAME, Vec::new()),
        (dev::CLIENT, "client", Vec::new()),
    ];
    for ((cert_file, key_file), name, sans) in leaves {
        let key = KeyPair::generate().map_err(fail)?;
        let cert = named(name, sans)?.signed_by(&key, &issuer).map_err(fail)?;
        write(cert_file, cert.pem())?;
        write(key_file, key.serialize_pem())?;
    }
    Ok(())
}

/// The metadata key the cluster token travels in, as `Bearer TOKEN`.
pub const AUTHORIZATION: &str = "authorization";

/// What a caller presents to a node: TLS (to verify the node, and perhaps
/// a certificate of its own) and the cluster token, if it has them.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// The cluster token, sent as a bearer token.
    pub token: Option<String>,
    /// TLS for new connections (none: plaintext).
    pub tls: Option<Arc<ClientTls>>,
}

impl PartialEq for Credentials {
    fn eq(&self, other: &Credentials) -> bool {
        let same_tls = match (&self.tls, &other.tls) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        self.token == other.token && same_tls
    }
}

impl Eq for Credentials {}

impl Credentials {
    /// `message` as a request carrying the token, if any.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            if let Ok(value) = format!("Bearer {token}").parse() {
                request.metadata_mut().insert(AUTHORIZATION, value);
            }
        }
        request
    }

    /// An endpoint for `addr` (`host:port`): `https` with the current TLS
    /// configuration, or plain `http`.
    pub fn endpoint(&self, addr: &str) -> Result<tonic::transport::Endpoint, String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| format!("bad endpoint {addr:?}: {e}"))?;
        match &self.tls {
            Some(tls) => endpoint
                .tls_config(tls.config())
                .map_err(|e| format!("TLS for {addr}: {e}")),
            None => Ok(endpoint),
        }
    }
}

/// Reads a cluster token from `path`: the file's text without surrounding
/// whitespace, which must not be empty.
pub fn read_token(path: &Path) -> Result<String, TlsError> {
    let text = String::from_utf8_lossy(&read(path)?).trim().to_string();
    if text.is_empty() || text.contains(char::is_whitespace) {
        return Err(TlsError::Config(format!(
            "{}: a token is one word of text",
            path.display()
        )));
    }
    Ok(text)
}

/// The credentials `files` and `token_file` describe (TLS when any file is
/// given).
pub fn credentials(files: &TlsFiles, token_file: Option<&Path>) -> Result<Credentials, TlsError> {
    Ok(Credentials {
        token: token_file.map(read_token).transpose()?,
        tls: files
            .any()
            .then(|| ClientTls::load(files).map(Arc::new))
            .transpose()?,
    })
}
