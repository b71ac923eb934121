//! Certificates for TLS tests: a throwaway CA, a server certificate for
//! `localhost` only (so a test can connect to `127.0.0.1` to see host-name
//! verification fail), and a client certificate for one role, written as
//! PEM files in a directory the server's OS user can read.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

use crate::{Cluster, ClusterBuilder};

/// A CA with a server and a client certificate. Files: `ca.pem`,
/// `server.pem`, `server.key`, `client.pem`, `client.key`.
pub struct TestPki {
    dir: tempfile::TempDir,
    /// The CA certificate, PEM.
    pub ca_pem: String,
}

impl TestPki {
    /// Makes the CA and certificates; the client certificate's common name
    /// (the role it logs in as with `cert` authentication) is `client_role`.
    ///
    /// # Panics
    /// If the files cannot be written.
    pub fn new(client_role: &str) -> TestPki {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "pg-testkit CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key"))
            .expect("CA certificate");
        let signed = |names: Vec<String>, cn: &str| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(names).expect("params");
            params.distinguished_name.push(DnType::CommonName, cn);
            let cert = params.signed_by(&key, &ca).expect("certificate");
            (cert.pem(), key.serialize_pem())
        };
        let (server, server_key) = signed(vec!["localhost".to_string()], "localhost");
        let (client, client_key) = signed(Vec::new(), client_role);
        let pki = TestPki {
            dir,
            ca_pem: ca.pem(),
        };
        pki.write("ca.pem", &pki.ca_pem);
        pki.write("server.pem", &server);
        pki.write("server.key", &server_key);
        pki.write("client.pem", &client);
        pki.write("client.key", &client_key);
        pki
    }

    /// The path of one of the files.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The text of one of the files.
    pub fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).expect("read PEM")
    }

    fn write(&self, name: &str, text: &str) {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write PEM");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }

    /// A cluster serving the server certificate, trusting the CA for client
    /// certificates, with these `pg_hba.conf` lines (none: the defaults).
    pub fn start_cluster(&self, hba: &[&str]) -> Cluster {
        let mut b = ClusterBuilder::new()
            .tls(self.path("server.pem"), self.path("server.key"))
            .setting(
                "ssl_ca_file",
                self.path("ca.pem").to_str().expect("UTF-8 path"),
            );
        for line in hba {
            b = b.hba(line);
        }
        b.start()
    }
}
