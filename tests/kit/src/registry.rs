//! A real container registry (Debian's `docker-registry`, the CNCF
//! distribution registry) for tests: started on a free loopback port with
//! filesystem storage in a temporary directory, stopped on drop.
//!
//! Options: htpasswd basic auth (bcrypt hashes made by Python's `crypt`, as
//! the registry requires bcrypt) and push notifications to a webhook URL with
//! configured headers. Images are pushed through the real API with
//! `oci-client` (a 1 KiB zero layer and a config whose `created` is given),
//! so every tag has its own digest and can be deleted on its own.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use tempfile::TempDir;

use crate::{find_executable, free_port, wait_for_port};

/// How to get the registry when it is missing: printed by the harness.
pub const REGISTRY_INSTALL_HINT: &str =
    "docker-registry not found: install it with `apt-get install -y docker-registry` (or set DOCKER_REGISTRY_BIN)";

/// Where the registry sends push notifications.
#[derive(Debug, Clone)]
pub struct Notifications {
    /// The webhook URL.
    pub url: String,
    /// Headers sent with every notification (`Authorization: Bearer …`).
    pub headers: Vec<(String, String)>,
}

impl Notifications {
    /// Notifications to a scanner's webhook endpoint on `scanner_port`
    /// (`/hooks/distribution`), presenting `secret` as a bearer token: the
    /// set-up of every end-to-end test, demo and bench that pushes.
    pub fn to_scanner(scanner_port: u16, secret: &str) -> Self {
        Self {
            url: format!("http://127.0.0.1:{scanner_port}/hooks/distribution"),
            headers: vec![("Authorization".into(), format!("Bearer {secret}"))],
        }
    }
}

/// How to start a registry.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Username and password for htpasswd basic auth; anonymous when `None`.
    pub basic_auth: Option<(String, String)>,
    /// Push notifications, when wanted.
    pub notifications: Option<Notifications>,
}

/// PEM files of a registry serving mutual TLS (see
/// [`Registry::restart_with_mutual_tls`]).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// A client certificate the registry accepts.
    pub client_cert: PathBuf,
    /// Its private key (PKCS#8).
    pub client_key: PathBuf,
}

/// A running `docker-registry serve`, killed when dropped.
pub struct Registry {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
    client: Client,
    auth: RegistryAuth,
    options: RegistryOptions,
}

impl Registry {
    /// Starts an anonymous registry.
    pub fn start() -> Self {
        Self::start_with(RegistryOptions::default())
    }

    /// Starts an anonymous registry that notifies a scanner's webhook on
    /// `scanner_port` of every push (see [`Notifications::to_scanner`]).
    pub fn notifying_scanner(scanner_port: u16, secret: &str) -> Self {
        Self::start_with(RegistryOptions {
            basic_auth: None,
            notifications: Some(Notifications::to_scanner(scanner_port, secret)),
        })
    }

    /// Starts a registry with `options` and waits until it accepts
    /// connections.
    pub fn start_with(options: RegistryOptions) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tagrelay-registry-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        if let Some((user, password)) = &options.basic_auth {
            std::fs::write(
                dir.path().join("htpasswd"),
                format!("{user}:{}\n", bcrypt(password)),
            )
            .expect("htpasswd");
        }
        let host = format!("127.0.0.1:{port}");
        let client = Client::new(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(vec![host]),
            ..Default::default()
        });
        let auth = match &options.basic_auth {
            Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        };
        let mut registry = Self {
            child: None,
            port,
            dir,
            client,
            auth,
            options,
        };
        registry.spawn(None);
        registry
    }

    fn spawn(&mut self, tls: Option<&Path>) {
        let config = self.dir.path().join("config.yml");
        let mut yaml = config_yaml(self.dir.path(), self.port, &self.options);
        if let Some(tls) = tls {
            yaml.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n    clientcas:\n      - {}\n",
                tls.join("server.crt").display(),
                tls.join("server.key").display(),
                tls.join("ca.crt").display()
            ));
        }
        std::fs::write(&config, yaml).expect("registry config");
        let binary =
            find_executable("docker-registry", "DOCKER_REGISTRY_BIN").expect(REGISTRY_INSTALL_HINT);
        let log_path = self.dir.path().join("registry.log");
        let log = File::create(&log_path).expect("log file");
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect(REGISTRY_INSTALL_HINT);
        self.child = Some(child);
        wait_for_port(self.port, Duration::from_secs(20), &log_path);
    }

    /// Restarts the registry on the same port and storage serving HTTPS
    /// that requires a client certificate, and returns the PEM files to
    /// reach it (made with `openssl`: a CA, a server certificate for
    /// 127.0.0.1 and a client certificate). Push images before: the push
    /// helper cannot present a client certificate.
    pub fn restart_with_mutual_tls(&mut self) -> TlsFiles {
        let tls = self.dir.path().join("tls");
        crate::pki::Pki::make(&tls);
        self.kill();
        self.spawn(Some(&tls));
        TlsFiles {
            ca: tls.join("ca.crt"),
            client_cert: tls.join("client.crt"),
            client_key: tls.join("client.key"),
        }
    }

    /// `127.0.0.1:PORT`, the registry part of image names.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host())
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The registry's log, for assertion messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Pushes `repository:tag` (a 1 KiB zero layer and a config created at
    /// `created`) through the registry API; returns the manifest digest.
    pub async fn push_image(&self, repository: &str, tag: &str, created: DateTime<Utc>) -> String {
        let reference: Reference = format!("{}/{repository}:{tag}", self.host())
            .parse()
            .expect("reference");
        let layer = ImageLayer::oci_v1(vec![0u8; 1024], None);
        let config = serde_json::json!({
            "created": created.to_rfc3339(),
            "architecture": "amd64",
            "os": "linux",
            "config": {"Labels": {"tag": tag}},
            "rootfs": {"type": "layers", "diff_ids": [layer.sha256_digest()]},
        });
        let config = Config::oci_v1(serde_json::to_vec(&config).expect("config"), None);
        let manifest = OciImageManifest::build(std::slice::from_ref(&layer), &config, None);
        self.client
            .push(&reference, &[layer], config, &self.auth, Some(manifest))
            .await
            .unwrap_or_else(|e| panic!("push {reference}: {e}\n{}", self.log()));
        self.client
            .fetch_manifest_digest(&reference, &self.auth)
            .await
            .expect("digest of the pushed image")
    }

    /// Pushes each tag of `tags` as its own image, `created` one second apart
    /// in the given order.
    pub async fn push_tags(&self, repository: &str, tags: &[&str]) {
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        for (i, tag) in tags.iter().enumerate() {
            let created = start + chrono::Duration::seconds(i as i64);
            self.push_image(repository, tag, created).await;
        }
    }

    /// Deletes one tag: its image has its own digest (see [`push_image`]),
    /// and the registry removes the tags of a deleted manifest.
    ///
    /// [`push_image`]: Registry::push_image
    pub async fn delete_tag(&self, repository: &str, tag: &str) {
        let reference: Reference = format!("{}/{repository}:{tag}", self.host())
            .parse()
            .expect("reference");
        let digest = self
            .client
            .fetch_manifest_digest(&reference, &self.auth)
            .await
            .expect("digest of the tag to delete");
        let url = format!("{}/v2/{repository}/manifests/{digest}", self.url());
        let mut request = reqwest::Client::new().delete(&url);
        if let RegistryAuth::Basic(user, password) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.expect("delete request");
        assert!(
            response.status().is_success(),
            "delete {repository}:{tag}: {}",
            response.status()
        );
    }

    /// Adds many tags at once by writing tag links straight into the
    /// registry's storage, all pointing at the image of `existing_tag`
    /// (which must have been pushed). The registry reads tag links from disk
    /// on every listing, so it then serves them like pushed tags; pushing
    /// through the API costs about 0.1 s per tag, too slow for the tens of
    /// thousands large-repository tests and benchmarks need.
    pub fn add_tags_in_storage(&self, repository: &str, existing_tag: &str, tags: &[String]) {
        self.copy_tags_in_storage(repository, existing_tag, repository, tags);
    }

    /// Like [`add_tags_in_storage`], but into another repository
    /// `to_repository` (created if needed), for benchmarks with many
    /// repositories.
    ///
    /// [`add_tags_in_storage`]: Registry::add_tags_in_storage
    pub fn copy_tags_in_storage(
        &self,
        from_repository: &str,
        existing_tag: &str,
        to_repository: &str,
        tags: &[String],
    ) {
        let link = std::fs::read(
            self.tags_dir(from_repository)
                .join(existing_tag)
                .join("current/link"),
        )
        .expect("the existing tag's link: push it first");
        let tags_dir = self.tags_dir(to_repository);
        for tag in tags {
            let current = tags_dir.join(tag).join("current");
            std::fs::create_dir_all(&current).expect("tag directory");
            std::fs::write(current.join("link"), &link).expect("tag link");
        }
    }

    fn tags_dir(&self, repository: &str) -> PathBuf {
        self.dir
            .path()
            .join("storage/docker/registry/v2/repositories")
            .join(repository)
            .join("_manifests/tags")
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

fn config_yaml(dir: &Path, port: u16, options: &RegistryOptions) -> String {
    let mut yaml = format!(
        "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
        dir.join("storage").display()
    );
    if options.basic_auth.is_some() {
        yaml.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: tagrelay-test\n    path: {}\n",
            dir.join("htpasswd").display()
        ));
    }
    if let Some(notifications) = &options.notifications {
        yaml.push_str(&format!(
            "notifications:\n  endpoints:\n    - name: tagrelay\n      url: {}\n      timeout: 2s\n      threshold: 3\n      backoff: 200ms\n      ignore:\n        actions: [pull]\n",
            notifications.url
        ));
        if !notifications.headers.is_empty() {
            yaml.push_str("      headers:\n");
            for (name, value) in &notifications.headers {
                yaml.push_str(&format!("        {name}: [{value:?}]\n"));
            }
        }
    }
    yaml
}

/// A bcrypt hash of `password`, made by Python's `crypt` module (the
/// registry accepts only bcrypt in htpasswd files), at bcrypt's lowest cost
/// (2^4 rounds): the registry checks the hash on every request, and the
/// default cost (2^12, about 250 ms of CPU each) makes a registry under a
/// soak's load spend its time hashing and time every scan out.
fn bcrypt(password: &str) -> String {
    let output = Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt, sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))",
            password,
        ])
        .output()
        .expect("python3 for bcrypt");
    assert!(
        output.status.success(),
        "bcrypt via python3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
