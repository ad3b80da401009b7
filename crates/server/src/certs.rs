//! Development certificates (`meridian certs`): a cluster CA, node certificates naming
//! `node-<id>.<region>.meridian` (server and client usage, for mutual TLS between nodes, plus
//! `localhost` and the loopback addresses so clients on this machine can verify them), and
//! client certificates whose organisation holds their grants. Keys are ECDSA P-256, written
//! with mode 0600. Production certificates from an operator's own CA need only the same names.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::tls;

/// A certificate and its key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A loaded CA that signs.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
}

fn validity(params: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // A day back: a node whose clock runs a little behind the issuer's still accepts it.
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(days.into());
}

fn err(what: &str) -> impl Fn(rcgen::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl Ca {
    /// A new self-signed CA.
    pub fn generate(days: u32) -> Result<Ca, String> {
        let key = KeyPair::generate().map_err(err("generating the CA key"))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err("CA"))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(DnType::CommonName, "Meridian cluster CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, days);
        let cert = params.self_signed(&key).map_err(err("signing the CA"))?;
        Ok(Ca { cert, key })
    }

    /// The CA in `dir` (`ca.pem`, `ca.key`).
    pub fn load(dir: &Path) -> Result<Ca, String> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name)).map_err(|e| {
                format!(
                    "cannot read {}: {e} (create a CA with `meridian certs ca --dir {}`)",
                    dir.join(name).display(),
                    dir.display()
                )
            })
        };
        let key = KeyPair::from_pem(&read("ca.key")?).map_err(err("ca.key"))?;
        let params =
            CertificateParams::from_ca_cert_pem(&read("ca.pem")?).map_err(err("ca.pem"))?;
        let cert = params.self_signed(&key).map_err(err("ca.pem"))?;
        Ok(Ca { cert, key })
    }

    pub fn issued(&self) -> Issued {
        Issued {
            cert_pem: self.cert.pem(),
            key_pem: self.key.serialize_pem(),
        }
    }

    fn sign(&self, params: CertificateParams, what: &str) -> Result<Issued, String> {
        let key = KeyPair::generate().map_err(err("generating a key"))?;
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .map_err(err(what))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A node certificate for node `id` of `region`, valid also for `hosts` (DNS names or IP
    /// addresses clients use to reach it) and for this machine's loopback names.
    pub fn node(
        &self,
        id: u64,
        region: &str,
        hosts: &[String],
        days: u32,
    ) -> Result<Issued, String> {
        if id == 0 {
            return Err("node ids start at 1".into());
        }
        if region.is_empty() || region.contains(['.', ' ', '/']) {
            return Err(format!(
                "{region:?} is not a region name (letters, digits and dashes)"
            ));
        }
        let mut names = vec![
            tls::node_name(id, region),
            "localhost".into(),
            "127.0.0.1".into(),
            "::1".into(),
        ];
        names.extend(hosts.iter().cloned());
        let mut params =
            CertificateParams::new(names).map_err(err("a node certificate's names"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("node-{id}"));
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, days);
        self.sign(params, "signing a node certificate")
    }

    /// A client certificate for `name` (the principal `cert:<name>`) with `grants`
    /// (`role[:pattern]` each), which the CA vouches for in the organisation field.
    pub fn client(&self, name: &str, grants: &[String], days: u32) -> Result<Issued, String> {
        meridian_control::auth::validate_name(name)?;
        for g in grants {
            meridian_control::auth::Grant::parse(g)?;
        }
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(err("a client certificate"))?;
        params.distinguished_name.push(DnType::CommonName, name);
        if !grants.is_empty() {
            params
                .distinguished_name
                .push(DnType::OrganizationName, grants.join(","));
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, days);
        self.sign(params, "signing a client certificate")
    }
}

/// Writes `<stem>.pem` and `<stem>.key` (mode 0600) into `dir`; returns their paths.
pub fn write(dir: &Path, stem: &str, issued: &Issued) -> Result<(PathBuf, PathBuf), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    std::fs::write(&cert, &issued.cert_pem)
        .map_err(|e| format!("cannot write {}: {e}", cert.display()))?;
    write_private(&key, issued.key_pem.as_bytes())?;
    Ok((cert, key))
}

/// Writes a secret readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    o.mode(0o600);
    o.open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Goal: what `meridian certs` issues is what the TLS layer reads back.
    #[test]
    fn issued_certificates_carry_identities_and_grants() {
        let ca = Ca::generate(30).unwrap();
        let node = ca.node(3, "eu-west-1", &["db.example".into()], 30).unwrap();
        let der = rustls_pemfile::certs(&mut node.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let id = tls::node_identity(&der).unwrap();
        assert_eq!((id.node, id.region.as_str()), (3, "eu-west-1"));
        let client = ca
            .client("alice", &["writer:orders*".into(), "reader".into()], 30)
            .unwrap();
        let der = rustls_pemfile::certs(&mut client.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        assert!(tls::node_identity(&der).is_err(), "a client names no node");
        let p = tls::cert_principal(&der).unwrap();
        assert_eq!(p.name, "cert:alice");
        let grants: Vec<String> = p.grants.iter().map(|g| g.describe()).collect();
        assert_eq!(grants.len(), 2, "{grants:?}");
        assert!(ca.client("bad name", &[], 1).is_err());
        assert!(ca.client("bob", &["emperor".into()], 1).is_err());
        assert!(ca.node(0, "x", &[], 1).is_err());
    }

    // Goal: a CA written to disk and loaded again signs certificates that chain to it.
    #[test]
    fn a_reloaded_ca_signs_chains_that_verify() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate(30).unwrap();
        write(dir.path(), "ca", &ca.issued()).unwrap();
        let again = Ca::load(dir.path()).unwrap();
        let node = again.node(1, "us-east-1", &[], 30).unwrap();
        write(dir.path(), "node-1", &node).unwrap();
        let cfg = tls::TlsConfig {
            ca_file: dir.path().join("ca.pem"),
            cert_file: dir.path().join("node-1.pem"),
            key_file: dir.path().join("node-1.key"),
            client_certs: tls::ClientCerts::Optional,
            reload_interval_ms: 0,
        };
        let me = crate::transport::Endpoint {
            node: 1,
            region: "us-east-1".into(),
        };
        tls::Tls::load(&cfg, &me).unwrap();
        let other = crate::transport::Endpoint {
            node: 2,
            region: "us-east-1".into(),
        };
        let e = tls::Tls::load(&cfg, &other).err().unwrap();
        assert!(e.contains("names node-1.us-east-1.meridian"), "{e}");
    }
}
