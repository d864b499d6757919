//! Registry credentials from the clouds and from docker credential
//! helpers, against real registries (`docker-registry` accepting only the
//! credential the cloud gives), moto for AWS, and loopback servers
//! implementing Google's and Azure's documented token protocols
//! (`tagrelay_testkit::cloud`). The end-to-end scan with events is in
//! `scanner.rs` (`cloud_credentials_scan_end_to_end_and_never_leak`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test: a failure here is a failed test

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use tagrelay_proto::reference::cloud::CloudProvider;
use tagrelay_scanner::cloud::{CloudEnvironment, CloudError};
use tagrelay_scanner::credentials::{Credentials, TlsMaterial};
use tagrelay_scanner::helper::{CredentialHelpers, HelperError};
use tagrelay_scanner::registry::{Registries, RegistryError, RegistrySettings, Target};
use tagrelay_testkit::cloud::{rsa_key_pair, AcrFront, CloudIdentity, Identities, Moto};
use tagrelay_testkit::registry::{Registry, RegistryOptions};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn registries(env: &[(&str, &str)], host: &str) -> Registries {
    Registries::new(RegistrySettings {
        cloud: CloudEnvironment::from_vars(env.iter().map(|(k, v)| (k.to_string(), v.to_string()))),
        resolve: vec![(host.to_string(), LOOPBACK)],
        request_timeout: Duration::from_secs(5),
        attempts: 1,
        ..RegistrySettings::default()
    })
}

fn target(registry: String, cloud: Option<CloudProvider>) -> Target {
    Target {
        registry,
        path: "demo/app".into(),
        insecure: true,
        credentials: Credentials::Anonymous,
        tls: TlsMaterial::default(),
        proxy: None,
        cloud,
    }
}

/// Logs in with `provider` and lists the tags.
async fn scan(registries: &Registries, mut target: Target) -> Result<Vec<String>, String> {
    if let Some(provider) = target.cloud {
        target.credentials = registries
            .cloud_credentials(provider, &target)
            .await
            .map_err(|e| format!("cloud: {e}"))?;
    }
    let mut tags = registries
        .list_tags(&target)
        .await
        .map_err(|e| format!("registry: {e}"))?
        .tags;
    tags.sort();
    Ok(tags)
}

fn identities(public_key: &str) -> Identities {
    Identities {
        google_token: "ya29.google-access-5c1e".into(),
        google_client_email: "scanner@project.iam.gserviceaccount.com".into(),
        google_public_key: public_key.into(),
        aad_token: "aad-access-77d2".into(),
        azure_tenant: "tenant-1".into(),
        azure_client_id: "client-1".into(),
        azure_federated_token: "federated-sa-token-9b1".into(),
        identity_header: "identity-header-31a".into(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn aws_ecr_tokens_come_from_sigv4_signed_calls_and_a_wrong_secret_gets_none() {
    let moto = Moto::start(true);
    let (key_id, secret) = moto.access_key();
    let registry = Registry::start_with(RegistryOptions {
        basic_auth: Some(("AWS".into(), "123456789012-auth-token".into())),
        ..Default::default()
    });
    registry.push_tags("demo/app", &["1.0.0", "1.1.0"]).await;
    let host = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    let ecr = format!("{host}:{}", registry.port());
    let endpoint = moto.endpoint();
    let good = registries(
        &[
            ("AWS_ACCESS_KEY_ID", &key_id),
            ("AWS_SECRET_ACCESS_KEY", &secret),
            ("AWS_ENDPOINT_URL", &endpoint),
        ],
        host,
    );
    let aws = Some(CloudProvider::Aws);
    assert_eq!(
        scan(&good, target(ecr.clone(), aws)).await.unwrap(),
        ["1.0.0", "1.1.0"]
    );
    // moto's token expired in 2015: it is used, cached briefly, not asked
    // for in a loop.
    let before = good.requests();
    assert_eq!(
        scan(&good, target(ecr.clone(), aws)).await.unwrap().len(),
        2
    );
    assert_eq!(
        good.requests() - before,
        1,
        "the cached token served the second scan"
    );

    let wrong = registries(
        &[
            ("AWS_ACCESS_KEY_ID", &key_id),
            ("AWS_SECRET_ACCESS_KEY", "not-the-secret"),
            ("AWS_ENDPOINT_URL", &endpoint),
        ],
        host,
    );
    let error = wrong
        .cloud_credentials(CloudProvider::Aws, &target(ecr.clone(), aws))
        .await
        .unwrap_err();
    assert!(
        matches!(error, CloudError::Refused { status: 403, .. }),
        "{error}"
    );
    assert!(!error.is_transient());
    assert!(!error.to_string().contains("not-the-secret"), "{error}");

    // Profiles in the shared credentials file, chosen by AWS_PROFILE.
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "credentials",
        &format!("[default]\naws_access_key_id = {key_id}\naws_secret_access_key = wrong\n\n[ci]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"),
    );
    let profile = registries(
        &[
            ("AWS_SHARED_CREDENTIALS_FILE", &file),
            ("AWS_PROFILE", "ci"),
            ("AWS_ENDPOINT_URL", &endpoint),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
        host,
    );
    assert_eq!(
        scan(&profile, target(ecr.clone(), aws))
            .await
            .unwrap()
            .len(),
        2
    );
    let default_profile = registries(
        &[
            ("AWS_SHARED_CREDENTIALS_FILE", &file),
            ("AWS_ENDPOINT_URL", &endpoint),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ],
        host,
    );
    assert!(scan(&default_profile, target(ecr.clone(), aws))
        .await
        .unwrap_err()
        .contains("403"));
    let nothing = registries(
        &[
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_ENDPOINT_URL", &endpoint),
        ],
        host,
    );
    let error = nothing
        .cloud_credentials(CloudProvider::Aws, &target(ecr.clone(), aws))
        .await
        .unwrap_err();
    assert!(matches!(error, CloudError::NotConfigured { .. }), "{error}");

    // The token the registry does not take: refused by the registry, not
    // by the cloud.
    let other = Registry::start_with(RegistryOptions {
        basic_auth: Some(("AWS".into(), "another-token".into())),
        ..Default::default()
    });
    other.push_tags("demo/app", &["1.0.0"]).await;
    let refused = scan(&good, target(format!("{host}:{}", other.port()), aws))
        .await
        .unwrap_err();
    assert!(
        refused.starts_with("registry:") && refused.contains("provider aws gave"),
        "{refused}"
    );
}

#[tokio::test]
async fn aws_instance_metadata_and_web_identity_credentials_reach_ecr() {
    let moto = Moto::start(false);
    let registry = Registry::start_with(RegistryOptions {
        basic_auth: Some(("AWS".into(), "123456789012-auth-token".into())),
        ..Default::default()
    });
    registry.push_tags("demo/app", &["2.0.0"]).await;
    let host = "123456789012.dkr.ecr.eu-west-1.amazonaws.com";
    let ecr = format!("{host}:{}", registry.port());
    let endpoint = moto.endpoint();
    let imds = registries(
        &[
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint),
            ("AWS_ENDPOINT_URL", &endpoint),
        ],
        host,
    );
    assert_eq!(
        scan(&imds, target(ecr.clone(), Some(CloudProvider::Aws)))
            .await
            .unwrap(),
        ["2.0.0"]
    );
    let closed = format!("http://127.0.0.1:{}", tagrelay_testkit::free_port());
    let no_imds = registries(
        &[
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &closed),
            ("AWS_ENDPOINT_URL", &endpoint),
        ],
        host,
    );
    let error = no_imds
        .cloud_credentials(
            CloudProvider::Aws,
            &target(ecr.clone(), Some(CloudProvider::Aws)),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, CloudError::NotConfigured { .. }), "{error}");

    let dir = tempfile::tempdir().unwrap();
    let token_file = write(dir.path(), "token", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln");
    let web = registries(
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", &token_file),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/scanner"),
            ("AWS_ENDPOINT_URL", &endpoint),
        ],
        host,
    );
    assert_eq!(
        scan(&web, target(ecr.clone(), Some(CloudProvider::Aws)))
            .await
            .unwrap(),
        ["2.0.0"]
    );
    let missing = registries(
        &[
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/scanner"),
            ("AWS_ENDPOINT_URL", &endpoint),
        ],
        host,
    );
    let error = missing
        .cloud_credentials(CloudProvider::Aws, &target(ecr, Some(CloudProvider::Aws)))
        .await
        .unwrap_err();
    assert!(matches!(error, CloudError::Unusable { .. }), "{error}");
}

#[tokio::test]
async fn gcp_tokens_from_a_service_account_key_or_the_metadata_server_and_a_wrong_key_gets_none() {
    let (private_key, public_key) = rsa_key_pair();
    let ids = identities(&public_key);
    let identity = CloudIdentity::start(ids.clone()).await;
    let registry = Registry::start_with(RegistryOptions {
        basic_auth: Some(("oauth2accesstoken".into(), ids.google_token.clone())),
        ..Default::default()
    });
    registry.push_tags("demo/app", &["1.0.0", "1.2.0"]).await;
    let host = "europe-docker.pkg.dev";
    let gar = format!("{host}:{}", registry.port());
    let gcp = Some(CloudProvider::Gcp);
    let dir = tempfile::tempdir().unwrap();
    let key_file = |private_key: &str| {
        serde_json::json!({
            "type": "service_account",
            "client_email": ids.google_client_email,
            "private_key": private_key,
            "private_key_id": "k1",
            "token_uri": format!("{}/token", identity.url()),
        })
        .to_string()
    };
    let good = write(dir.path(), "key.json", &key_file(&private_key));
    let with_key = registries(&[("GOOGLE_APPLICATION_CREDENTIALS", &good)], host);
    assert_eq!(
        scan(&with_key, target(gar.clone(), gcp)).await.unwrap(),
        ["1.0.0", "1.2.0"]
    );
    assert_eq!(identity.requests(), ["POST google token"]);

    let (other_key, _) = rsa_key_pair();
    let bad = write(dir.path(), "other.json", &key_file(&other_key));
    let error = registries(&[("GOOGLE_APPLICATION_CREDENTIALS", &bad)], host)
        .cloud_credentials(CloudProvider::Gcp, &target(gar.clone(), gcp))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, CloudError::Refused { status: 400, detail: Some(d), .. } if d.contains("invalid_grant")),
        "{error}"
    );

    let metadata = registries(&[("GCE_METADATA_HOST", &identity.host())], host);
    assert_eq!(
        scan(&metadata, target(gar.clone(), gcp))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        identity.requests().last().map(String::as_str),
        Some("GET metadata token")
    );

    let closed = format!("127.0.0.1:{}", tagrelay_testkit::free_port());
    let error = registries(&[("GCE_METADATA_HOST", &closed)], host)
        .cloud_credentials(CloudProvider::Gcp, &target(gar, gcp))
        .await
        .unwrap_err();
    assert!(matches!(error, CloudError::NotConfigured { .. }), "{error}");
}

#[tokio::test]
async fn azure_tokens_are_exchanged_at_the_registry_and_a_wrong_identity_gets_none() {
    let ids = identities("");
    let identity = CloudIdentity::start(ids.clone()).await;
    let upstream = Registry::start();
    upstream.push_tags("demo/app", &["3.0.0"]).await;
    let acr = AcrFront::start(&upstream.url(), &ids.aad_token, "acr-refresh-4e0").await;
    let host = "myreg.azurecr.io";
    let registry = format!("{host}:{}", acr.port());
    let azure = Some(CloudProvider::Azure);
    let dir = tempfile::tempdir().unwrap();
    let federated = write(dir.path(), "token", &ids.azure_federated_token);
    let authority = identity.url();
    let workload = |token_file: &str| {
        registries(
            &[
                ("AZURE_FEDERATED_TOKEN_FILE", token_file),
                ("AZURE_CLIENT_ID", &ids.azure_client_id),
                ("AZURE_TENANT_ID", &ids.azure_tenant),
                ("AZURE_AUTHORITY_HOST", &authority),
            ],
            host,
        )
    };
    assert_eq!(
        scan(&workload(&federated), target(registry.clone(), azure))
            .await
            .unwrap(),
        ["3.0.0"]
    );
    let wrong = write(dir.path(), "wrong", "another-service-account-token");
    let error = workload(&wrong)
        .cloud_credentials(CloudProvider::Azure, &target(registry.clone(), azure))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, CloudError::Refused { status: 401, .. }),
        "{error}"
    );
    assert!(!error.to_string().contains("another-service-account-token"));

    let endpoint = format!("{}/msi/token", identity.url());
    let managed = |header: &str| {
        registries(
            &[
                ("IDENTITY_ENDPOINT", &endpoint),
                ("IDENTITY_HEADER", header),
            ],
            host,
        )
    };
    assert_eq!(
        scan(
            &managed(&ids.identity_header),
            target(registry.clone(), azure)
        )
        .await
        .unwrap(),
        ["3.0.0"]
    );
    let error = managed("wrong-header")
        .cloud_credentials(CloudProvider::Azure, &target(registry.clone(), azure))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, CloudError::Refused { status: 401, .. }),
        "{error}"
    );

    // A docker config's identitytoken is the same refresh token, sent in
    // the OAuth2 form to the registry's token service.
    let plain = registries(&[], host);
    let mut with_identity = target(registry.clone(), None);
    with_identity.credentials = Credentials::IdentityToken("acr-refresh-4e0".into());
    assert_eq!(
        scan(&plain, with_identity.clone()).await.unwrap(),
        ["3.0.0"]
    );
    with_identity.credentials = Credentials::IdentityToken("stale-refresh".into());
    let error = plain.list_tags(&with_identity).await.unwrap_err();
    assert!(
        matches!(error, RegistryError::Unauthorized { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn credential_helpers_run_with_the_host_on_stdin_under_a_time_limit_and_their_stderr_is_never_shown(
) {
    let registry = Registry::start_with(RegistryOptions {
        basic_auth: Some(("ci".into(), "helper-pw-0d4".into())),
        ..Default::default()
    });
    registry.push_tags("demo/app", &["1.0.0"]).await;
    let dir = tempfile::tempdir().unwrap();
    let script = |name: &str, body: &str| {
        let path = dir.path().join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let host = registry.host();
    script(
        "good",
        &format!("[ \"$1\" = get ] || exit 3\nread host\necho \"helper-pw-0d4 on stderr\" >&2\n[ \"$host\" = \"{host}\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\necho '{{\"ServerURL\":\"'$host'\",\"Username\":\"ci\",\"Secret\":\"helper-pw-0d4\"}}'"),
    );
    script(
        "wrong",
        "read host\necho '{\"Username\":\"ci\",\"Secret\":\"stale-pw\"}'",
    );
    script("broken", "echo 'leaked-pw-on-stderr' >&2\nexit 2");
    script("slow", "sleep 10");
    let helpers = CredentialHelpers {
        path: vec!["/nonexistent".into(), dir.path().to_path_buf()],
        timeout: Duration::from_secs(1),
    };
    let credentials = helpers.get("good", &host).await.unwrap();
    let plain = registries(&[], "unused.example");
    let mut target = target(host.clone(), None);
    target.credentials = credentials;
    assert_eq!(plain.list_tags(&target).await.unwrap().tags, ["1.0.0"]);
    assert_eq!(
        helpers.get("good", "other.example").await.unwrap(),
        Credentials::Anonymous
    );

    target.credentials = helpers.get("wrong", &host).await.unwrap();
    assert!(matches!(
        plain.list_tags(&target).await.unwrap_err(),
        RegistryError::Unauthorized { .. }
    ));

    let error = helpers.get("broken", &host).await.unwrap_err();
    assert!(matches!(error, HelperError::Exited { .. }), "{error}");
    assert!(!error.to_string().contains("leaked-pw"), "{error}");
    let started = std::time::Instant::now();
    assert!(matches!(
        helpers.get("slow", &host).await.unwrap_err(),
        HelperError::TimedOut { .. }
    ));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "killed at the limit"
    );
    assert!(matches!(
        helpers.get("absent", &host).await.unwrap_err(),
        HelperError::NotFound { .. }
    ));
}

#[tokio::test]
async fn cloud_token_calls_go_through_the_repository_proxy_and_metadata_calls_do_not() {
    let (private_key, public_key) = rsa_key_pair();
    let ids = identities(&public_key);
    let identity = CloudIdentity::start(ids.clone()).await;
    let proxy = tagrelay_testkit::proxy::Tinyproxy::start("proxy-user", "proxy-pw");
    let dir = tempfile::tempdir().unwrap();
    let key = serde_json::json!({
        "type": "service_account",
        "client_email": ids.google_client_email,
        "private_key": private_key,
        "token_uri": format!("{}/token", identity.url()),
    });
    let key_file = write(dir.path(), "key.json", &key.to_string());
    let through_proxy = |password: &str| {
        let mut target = target("gcr.io".into(), Some(CloudProvider::Gcp));
        target.proxy = Some(tagrelay_scanner::credentials::ProxySettings {
            address: proxy.address(),
            credentials: Some(("proxy-user".into(), password.into())),
        });
        target
    };
    let proxied = through_proxy("proxy-pw");
    let with_key = registries(&[("GOOGLE_APPLICATION_CREDENTIALS", &key_file)], "gcr.io");
    let credentials = with_key
        .cloud_credentials(CloudProvider::Gcp, &proxied)
        .await
        .unwrap();
    assert!(
        matches!(credentials, Credentials::Basic { ref password, .. } if *password == ids.google_token)
    );
    let token_url = format!("{}/token", identity.url());
    assert!(proxy.log().contains(&token_url), "{}", proxy.log());

    let metadata = registries(&[("GCE_METADATA_HOST", &identity.host())], "gcr.io");
    metadata
        .cloud_credentials(CloudProvider::Gcp, &proxied)
        .await
        .unwrap();
    assert_eq!(
        identity.requests().last().map(String::as_str),
        Some("GET metadata token")
    );
    assert!(!proxy.log().contains("computeMetadata"), "{}", proxy.log());

    let wrong_proxy = through_proxy("wrong");
    let fresh = registries(&[("GOOGLE_APPLICATION_CREDENTIALS", &key_file)], "gcr.io");
    let error = fresh
        .cloud_credentials(CloudProvider::Gcp, &wrong_proxy)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            CloudError::Refused {
                status: 401 | 407,
                ..
            }
        ),
        "{error}"
    );
}
