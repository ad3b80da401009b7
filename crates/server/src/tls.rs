//! TLS on every listener (rustls with the ring provider).
//!
//! Between nodes: mutual TLS. Every node presents a certificate from the cluster's CA whose
//! subject alternative names hold `node-<id>.<region>.meridian`; the accepting side takes the
//! identity from the certificate it verified, and the transport refuses a frame whose sender
//! differs from it, or a node whose region differs from what the catalogue says
//! (`transport::Transport::serve_conn`). A client certificate (no node name) is refused on the
//! peer port, and a node certificate must carry the server-auth and client-auth usages.
//!
//! For clients: HTTPS and gRPC over TLS on the API ports, with client certificates `none`,
//! `optional` or `required`. A verified client certificate is a principal (`cert:<CN>`) whose
//! grants are its subject's organisation (O) values, `role[:pattern]` each, separated by commas
//! or spaces: a CA signs what a holder may do, as Kubernetes reads groups from O.
//!
//! Files are watched: at most once per `reload_interval_ms` a handshake looks at their
//! modification times and, when one changed, loads all three again; a set that does not load
//! is logged and the previous one stays in use. Open connections keep the certificates they
//! were made with.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use meridian_control::auth::Grant;
use meridian_types::NodeId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use serde::{Deserialize, Serialize};

use crate::auth::Principal;
use crate::transport::Endpoint;

/// The DNS name suffix of node identities.
pub const NODE_NAME_SUFFIX: &str = ".meridian";

/// The server name a dialing node sends (SNI); the name actually checked is the node name in
/// the certificate the peer presents.
const PEER_SNI: &str = "peer.meridian";

/// How long a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Handshakes in progress per listener, at most (beyond, new connections wait to be accepted).
pub const HANDSHAKES_MAX: usize = 256;

/// Whether clients of the HTTP and gRPC ports present certificates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientCerts {
    /// Not asked for (tokens authenticate).
    #[default]
    None,
    /// Verified when presented; a client without one may still use a token.
    Optional,
    /// Every client must present one from the CA.
    Required,
}

/// `[tls]` in a node's config.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The cluster CA's certificates (PEM): peers' and clients' certificates must chain to one.
    pub ca_file: PathBuf,
    /// This node's certificate chain (PEM), naming `node-<id>.<region>.meridian`.
    pub cert_file: PathBuf,
    /// Its private key (PEM, PKCS#8, SEC1 or PKCS#1).
    pub key_file: PathBuf,
    #[serde(default)]
    pub client_certs: ClientCerts,
    /// How often the three files are checked for replacement.
    #[serde(default = "default_reload_interval")]
    pub reload_interval_ms: u64,
}

fn default_reload_interval() -> u64 {
    1000
}

/// The node name that certifies node `id` in `region`.
pub fn node_name(id: NodeId, region: &str) -> String {
    format!("node-{id}.{region}{NODE_NAME_SUFFIX}")
}

/// The node identity a DNS name gives (`node-<id>.<region>.meridian`), if it is one.
pub fn parse_node_name(name: &str) -> Option<Endpoint> {
    let rest = name.strip_prefix("node-")?.strip_suffix(NODE_NAME_SUFFIX)?;
    let (id, region) = rest.split_once('.')?;
    let node: NodeId = id.parse().ok()?;
    if node == 0 || region.is_empty() || region.contains('.') {
        return None;
    }
    Some(Endpoint {
        node,
        region: region.to_string(),
    })
}

/// What a certificate says about its holder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertSubject {
    /// The node identities among its DNS names.
    pub nodes: Vec<Endpoint>,
    pub common_name: Option<String>,
    /// Its subject's organisation values.
    pub organisations: Vec<String>,
}

/// Reads the names of a DER certificate (already verified, or about to be).
pub fn subject_of(der: &[u8]) -> Result<CertSubject, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let mut out = CertSubject::default();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                if let Some(e) = parse_node_name(d) {
                    out.nodes.push(e);
                }
            }
        }
    }
    out.common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string);
    out.organisations = cert
        .subject()
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    Ok(out)
}

/// The single node identity a certificate names, or why it names none.
pub fn node_identity(der: &[u8]) -> Result<Endpoint, String> {
    let s = subject_of(der)?;
    match s.nodes.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err("the certificate names no node (a DNS name node-<id>.<region>.meridian); is it a client certificate?".into()),
        _ => Err("the certificate names more than one node".into()),
    }
}

/// The principal a verified client certificate stands for: `cert:<CN>` with the grants in
/// its organisation values.
pub fn cert_principal(der: &[u8]) -> Result<Principal, String> {
    let s = subject_of(der)?;
    let name = match (&s.common_name, s.nodes.first()) {
        (Some(cn), _) if !cn.is_empty() => cn.clone(),
        (_, Some(n)) => node_name(n.node, &n.region),
        _ => return Err("the client certificate has no common name".into()),
    };
    let mut grants = Vec::new();
    for o in &s.organisations {
        for g in o.split([',', ' ']).filter(|g| !g.is_empty()) {
            // An organisation that is not a grant (a company name) grants nothing.
            if let Ok(g) = Grant::parse(g) {
                grants.push(g);
            }
        }
    }
    Ok(Principal {
        name: format!("cert:{name}"),
        grants,
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

/// The certificates in a PEM file.
pub fn load_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(path, what)?;
    let certs = rustls_pemfile::certs(&mut bytes.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("the {what} {} is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "the {what} {} holds no certificate (expected PEM `BEGIN CERTIFICATE` blocks)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read(path, "private key")?;
    rustls_pemfile::private_key(&mut bytes.as_slice())
        .map_err(|e| format!("the key file {} is not PEM: {e}", path.display()))?
        .ok_or_else(|| format!("the key file {} holds no private key", path.display()))
}

/// A root store of the CAs in `path`.
pub fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(path, "CA file")? {
        roots
            .add(c)
            .map_err(|e| format!("a CA certificate in {} is not usable: {e}", path.display()))?;
    }
    Ok(Arc::new(roots))
}

/// Verifies a dialed peer: its certificate chains to the CA, is a server certificate, and
/// names exactly one node, the name webpki then checks it against.
#[derive(Debug)]
struct PeerServerVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = node_identity(end_entity).map_err(rustls::Error::General)?;
        let name = ServerName::try_from(node_name(id.node, &id.region))
            .map_err(|e| rustls::Error::General(format!("bad node name: {e}")))?;
        self.inner
            .verify_server_cert(end_entity, intermediates, &name, ocsp_response, now)
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

/// One loaded set of files, as the configs every listener and the dialer use.
pub struct Material {
    /// The peer port: a client certificate from the CA is required.
    pub peer_server: Arc<ServerConfig>,
    /// Dialing peers: presents this node's certificate, verifies the peer's.
    pub peer_client: Arc<ClientConfig>,
    /// The HTTP port (ALPN h2 and http/1.1).
    pub http_server: Arc<ServerConfig>,
    /// The gRPC port (ALPN h2).
    pub grpc_server: Arc<ServerConfig>,
}

fn build(cfg: &TlsConfig, me: &Endpoint) -> Result<Material, String> {
    let provider = provider();
    let roots = load_roots(&cfg.ca_file)?;
    let chain = load_certs(&cfg.cert_file, "certificate file")?;
    let key = load_key(&cfg.key_file)?;
    let named = node_identity(&chain[0])
        .map_err(|e| format!("cert_file {}: {e}", cfg.cert_file.display()))?;
    if named != *me {
        return Err(format!(
            "cert_file {} names {} but this node is {}: issue it with `meridian certs node --node-id {} --region {}`",
            cfg.cert_file.display(),
            node_name(named.node, &named.region),
            node_name(me.node, &me.region),
            me.node,
            me.region
        ));
    }
    let err = |e: rustls::Error| format!("TLS configuration: {e}");
    let verr = |e: rustls::server::VerifierBuilderError| format!("TLS verifier: {e}");
    let peer_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(verr)?;
    let server = |verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
                  alpn: &[&[u8]]|
     -> Result<Arc<ServerConfig>, String> {
        let mut c = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(err)?;
        c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(c))
    };
    let peer_server = server(peer_verifier, &[])?;
    let api_verifier: Arc<dyn rustls::server::danger::ClientCertVerifier> = match cfg.client_certs {
        ClientCerts::None => WebPkiClientVerifier::no_client_auth(),
        ClientCerts::Optional => {
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(verr)?
        }
        ClientCerts::Required => {
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(verr)?
        }
    };
    let http_server = server(api_verifier.clone(), &[b"h2", b"http/1.1"])?;
    let grpc_server = server(api_verifier, &[b"h2"])?;
    let inner =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| format!("TLS verifier: {e}"))?;
    let peer_client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(err)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerServerVerifier { inner }))
        .with_client_auth_cert(chain, key)
        .map_err(err)?;
    Ok(Material {
        peer_server,
        peer_client: Arc::new(peer_client),
        http_server,
        grpc_server,
    })
}

fn mtimes(cfg: &TlsConfig) -> [Option<SystemTime>; 3] {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    [m(&cfg.ca_file), m(&cfg.cert_file), m(&cfg.key_file)]
}

struct Watch {
    checked: Instant,
    stamps: [Option<SystemTime>; 3],
}

/// A node's TLS state: the current material, reloaded when its files change.
pub struct Tls {
    cfg: TlsConfig,
    me: Endpoint,
    current: Mutex<Arc<Material>>,
    watch: Mutex<Watch>,
}

impl Tls {
    /// Loads the files named in `cfg` for node `me`; an error names the file and the fix.
    pub fn load(cfg: &TlsConfig, me: &Endpoint) -> Result<Arc<Tls>, String> {
        let stamps = mtimes(cfg);
        let material = build(cfg, me)?;
        Ok(Arc::new(Tls {
            cfg: cfg.clone(),
            me: me.clone(),
            current: Mutex::new(Arc::new(material)),
            watch: Mutex::new(Watch {
                checked: Instant::now(),
                stamps,
            }),
        }))
    }

    pub fn client_certs(&self) -> ClientCerts {
        self.cfg.client_certs
    }

    /// The material to use for a new connection (reloaded first if the files changed).
    pub fn material(&self) -> Arc<Material> {
        let due = {
            let mut w = self.watch.lock().unwrap();
            if w.checked.elapsed() >= Duration::from_millis(self.cfg.reload_interval_ms) {
                w.checked = Instant::now();
                let now = mtimes(&self.cfg);
                if now != w.stamps {
                    w.stamps = now;
                    true
                } else {
                    false
                }
            } else {
                false
            }
        };
        if due {
            match build(&self.cfg, &self.me) {
                Ok(m) => {
                    tracing::info!(cert = %self.cfg.cert_file.display(), "TLS files changed: new connections use them");
                    metrics::counter!("meridian_tls_reloads_total", "outcome" => "ok").increment(1);
                    *self.current.lock().unwrap() = Arc::new(m);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TLS files changed but do not load; the previous ones stay in use");
                    metrics::counter!("meridian_tls_reloads_total", "outcome" => "failed")
                        .increment(1);
                }
            }
        }
        self.current.lock().unwrap().clone()
    }

    /// The name a dialing node sends.
    pub fn peer_sni() -> ServerName<'static> {
        ServerName::try_from(PEER_SNI).expect("a valid DNS name")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_round_trip_and_reject_lookalikes() {
        let e = parse_node_name(&node_name(7, "us-east-1")).unwrap();
        assert_eq!((e.node, e.region.as_str()), (7, "us-east-1"));
        for bad in [
            "node-0.us-east-1.meridian",
            "node-x.us-east-1.meridian",
            "node-7.meridian",
            "node-7.us.east.meridian",
            "node-7.us-east-1.meridian.evil",
            "client-7.us-east-1.meridian",
        ] {
            assert!(parse_node_name(bad).is_none(), "{bad}");
        }
    }
}
