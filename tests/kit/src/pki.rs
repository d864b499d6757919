//! A throwaway PKI made with `openssl`: a CA, a server certificate for
//! 127.0.0.1 and a client certificate, for the servers that need TLS with
//! client certificates (the registry, the HTTPS Git remote).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The PEM files of a [`Pki::make`].
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA that signed both certificates.
    pub ca: PathBuf,
    /// The server certificate (for IP 127.0.0.1) and its key.
    pub server: (PathBuf, PathBuf),
    /// A client certificate and its key (PKCS#8).
    pub client: (PathBuf, PathBuf),
}

impl Pki {
    /// Makes the CA and the two certificates in `dir`, valid for two days.
    pub fn make(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("tls directory");
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=tagrelay test CA",
        ]);
        openssl(&ca);
        for (name, usage) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            let mut request = vec!["req"];
            request.extend(ec);
            let key = format!("{name}.key");
            let csr = format!("{name}.csr");
            let crt = format!("{name}.crt");
            let ext = format!("{name}.ext");
            let subject = format!("/CN={name}");
            request.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
            openssl(&request);
            std::fs::write(dir.join(&ext), usage).expect("extensions");
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                "2",
                "-extfile",
                &ext,
            ]);
        }
        Self {
            ca: dir.join("ca.crt"),
            server: (dir.join("server.crt"), dir.join("server.key")),
            client: (dir.join("client.crt"), dir.join("client.key")),
        }
    }
}

/// A real TLS server (Debian's `stunnel`) in front of a plain one on
/// loopback: it presents the PKI's server certificate and requires a client
/// certificate signed by its CA. Stopped on drop.
pub struct TlsFront {
    port: u16,
    child: std::process::Child,
}

impl TlsFront {
    /// Serves TLS on a free port, forwarding to `127.0.0.1:backend`.
    pub fn start(backend: u16, pki: &Pki) -> Self {
        let port = crate::free_port();
        let config = pki.ca.with_file_name(format!("stunnel-{port}.conf"));
        std::fs::write(
            &config,
            format!(
                "foreground = yes\npid =\n[git]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{backend}\ncert = {}\nkey = {}\nCAfile = {}\nverifyChain = yes\n",
                pki.server.0.display(),
                pki.server.1.display(),
                pki.ca.display()
            ),
        )
        .expect("stunnel config");
        let child = Command::new("stunnel")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("stunnel (apt-get install stunnel4; scripts/install-deps does)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "stunnel did not listen"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self { port, child }
    }

    /// `https://127.0.0.1:PORT/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
