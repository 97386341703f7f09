//! Certificates made for one test with the `openssl` command-line tool, and a cluster switched
//! to TLS with them: a CA, a server certificate for `localhost` signed by it, a client
//! certificate (CN `certuser`), and a second CA that signed nothing the server presents.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{exec, unique_id, Cluster};

/// The files of [`Certs::make`], in a directory removed on drop.
pub struct Certs {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run openssl (is it installed?): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A P-256 key and a certificate for `cn` signed by `ca` (self-signed when `ca` is `None`).
fn issue(dir: &Path, name: &str, cn: &str, ca: Option<&str>, extensions: &str) {
    let key = format!("{name}.key");
    let subject = format!("/CN={cn}");
    let common = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", &key];
    match ca {
        None => {
            let crt = format!("{name}.crt");
            let args =
                [&["req", "-x509"][..], &common, &["-out", &crt, "-days", "2", "-subj", &subject]].concat();
            openssl(dir, &args);
        }
        Some(ca) => {
            let csr = format!("{name}.csr");
            openssl(dir, &[&["req"][..], &common, &["-out", &csr, "-subj", &subject]].concat());
            let ext = format!("{name}.ext");
            std::fs::write(dir.join(&ext), extensions).unwrap();
            let (ca_crt, ca_key, crt) = (format!("{ca}.crt"), format!("{ca}.key"), format!("{name}.crt"));
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &ca_crt,
                    "-CAkey",
                    &ca_key,
                    "-set_serial",
                    "2",
                    "-out",
                    &crt,
                    "-days",
                    "2",
                    "-extfile",
                    &ext,
                ],
            );
        }
    }
}

impl Certs {
    /// Makes `ca`, `other-ca`, `server` (for DNS name `localhost` only) and `client`
    /// (CN `certuser`).
    pub fn make() -> Certs {
        let dir = std::env::temp_dir().join(unique_id("realtime_e2e_certs_"));
        std::fs::create_dir_all(&dir).unwrap();
        issue(&dir, "ca", "realtime e2e CA", None, "");
        issue(&dir, "other-ca", "some other CA", None, "");
        let leaf = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n";
        issue(
            &dir,
            "server",
            "localhost",
            Some("ca"),
            &format!("{leaf}extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost\n"),
        );
        issue(&dir, "client", "certuser", Some("ca"), &format!("{leaf}extendedKeyUsage=clientAuth\n"));
        Certs { dir }
    }

    /// Path of `<name>.crt` or `<name>.key`, e.g. `path("ca.crt")`.
    pub fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(file)).unwrap()
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Turns on `ssl` with the server certificate and replaces `pg_hba.conf` with `hba` (lines for
/// TCP; the Unix socket stays `trust`), then restarts. Role `certuser` (superuser) can log in
/// with the client certificate where `hba` says `cert`.
pub async fn enable_tls(cluster: &Cluster, certs: &Certs, hba: &str) {
    cluster.write_data_file("server.crt", &certs.read("server.crt"), 0o644);
    cluster.write_data_file("server.key", &certs.read("server.key"), 0o600);
    cluster.write_data_file("root.crt", &certs.read("ca.crt"), 0o644);
    cluster.write_data_file("pg_hba.conf", format!("local all all trust\n{hba}\n").as_bytes(), 0o600);
    let conf = cluster.dir().join("data/postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str(
        "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'root.crt'\n",
    );
    std::fs::write(&conf, text).unwrap();
    exec(&cluster.client().await, "CREATE ROLE certuser LOGIN SUPERUSER").await;
    cluster.restart().await;
}
