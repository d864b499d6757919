//! `provider: aws`: an ECR authorization token (`GetAuthorizationToken`,
//! signed with SigV4 by `aws-sigv4`) from the first credentials the AWS
//! chain yields, in the SDKs' order: environment variables, the web
//! identity token file (EKS IRSA), the shared credentials and config files
//! (`AWS_PROFILE`), the instance metadata service (IMDSv2).

use std::time::{Duration, SystemTime};

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use base64::Engine;
use serde::Deserialize;
use tagrelay_proto::reference::cloud::ecr_region;

use super::{form, Call, CloudError};
use crate::credentials::Credentials;

/// AWS credentials: a key pair and, for temporary ones, a session token.
struct AwsKeys {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

/// The ECR credential for `registry` and when it expires.
pub(super) async fn login(
    call: &Call<'_>,
    registry: &str,
) -> Result<(Credentials, SystemTime), CloudError> {
    let region = ecr_region(registry)
        .map(str::to_string)
        .ok_or_else(|| call.unusable("spec.image", format!("{registry} is not an ECR registry")))?;
    let account = registry.split('.').next().unwrap_or_default();
    let keys = keys(call, &region).await?;
    let endpoint = call
        .env
        .var("AWS_ENDPOINT_URL_ECR")
        .or_else(|| call.env.var("AWS_ENDPOINT_URL"))
        .map(|e| e.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("https://api.ecr.{region}.amazonaws.com"));
    let url = format!("{endpoint}/");
    let body = format!(r#"{{"registryIds":["{account}"]}}"#);
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        (
            "x-amz-target",
            "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
        ),
    ];
    let signed = signed_headers(call, &keys, &region, "ecr", &url, &headers, body.as_bytes())?;
    let mut request = call.proxied.post(&url).body(body);
    for (name, value) in headers
        .iter()
        .copied()
        .chain(signed.iter().map(|(n, v)| (n.as_str(), v.as_str())))
    {
        request = request.header(name, value);
    }
    let mut sent = vec![keys.secret_access_key.as_str()];
    sent.extend(keys.session_token.as_deref());
    let answer = call.send(request, &url, &sent).await?;
    let answer: TokenAnswer = call.json(&answer, &url)?;
    let data = answer
        .authorization_data
        .into_iter()
        .next()
        .ok_or_else(|| malformed(call, &url, "no authorizationData"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(data.authorization_token.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| malformed(call, &url, "authorizationToken is not base64 text"))?;
    let (username, password) = decoded
        .split_once(':')
        .ok_or_else(|| malformed(call, &url, "authorizationToken is not user:password"))?;
    let expires = data
        .expires_at
        .filter(|t| t.is_finite() && *t > 0.0)
        .map(|t| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t))
        .unwrap_or_else(SystemTime::now);
    Ok((
        Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        },
        expires,
    ))
}

fn malformed(call: &Call<'_>, endpoint: &str, reason: &str) -> CloudError {
    CloudError::Malformed {
        provider: call.provider,
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenAnswer {
    #[serde(default)]
    authorization_data: Vec<AuthorizationData>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuthorizationData {
    authorization_token: String,
    #[serde(default)]
    expires_at: Option<f64>,
}

/// The SigV4 headers (`authorization`, `x-amz-date`, and
/// `x-amz-security-token` for temporary credentials) for a request.
fn signed_headers(
    call: &Call<'_>,
    keys: &AwsKeys,
    region: &str,
    service: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Vec<(String, String)>, CloudError> {
    let identity = aws_credential_types::Credentials::new(
        &keys.access_key_id,
        &keys.secret_access_key,
        keys.session_token.clone(),
        None,
        "tagrelay",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| call.unusable("SigV4", e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| call.unusable("SigV4", e.to_string()))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| call.unusable("SigV4", e.to_string()))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect())
}

/// The first credentials of the chain.
async fn keys(call: &Call<'_>, region: &str) -> Result<AwsKeys, CloudError> {
    let env = call.env;
    if let (Some(id), Some(secret)) = (
        env.var("AWS_ACCESS_KEY_ID"),
        env.var("AWS_SECRET_ACCESS_KEY"),
    ) {
        return Ok(AwsKeys {
            access_key_id: id.to_string(),
            secret_access_key: secret.to_string(),
            session_token: env.var("AWS_SESSION_TOKEN").map(str::to_string),
        });
    }
    if let (Some(file), Some(role)) = (
        env.var("AWS_WEB_IDENTITY_TOKEN_FILE"),
        env.var("AWS_ROLE_ARN"),
    ) {
        let session = env.var("AWS_ROLE_SESSION_NAME").unwrap_or("tagrelay");
        return web_identity(call, region, file, role, session).await;
    }
    let profile = env
        .var("AWS_PROFILE")
        .or_else(|| env.var("AWS_DEFAULT_PROFILE"))
        .unwrap_or("default");
    let credentials_file = env
        .var("AWS_SHARED_CREDENTIALS_FILE")
        .map(Into::into)
        .or_else(|| env.home_file(".aws/credentials"));
    let config_file = env
        .var("AWS_CONFIG_FILE")
        .map(Into::into)
        .or_else(|| env.home_file(".aws/config"));
    for (path, section) in [
        (credentials_file, profile.to_string()),
        (
            config_file,
            if profile == "default" {
                "default".to_string()
            } else {
                format!("profile {profile}")
            },
        ),
    ] {
        let Some(path) = path else { continue };
        let Some(text) = read_optional(call, &path)? else {
            continue;
        };
        let values = profile_section(&text, &section);
        let value = |key: &str| {
            values
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        if let (Some(id), Some(secret)) =
            (value("aws_access_key_id"), value("aws_secret_access_key"))
        {
            return Ok(AwsKeys {
                access_key_id: id,
                secret_access_key: secret,
                session_token: value("aws_session_token"),
            });
        }
        if let (Some(file), Some(role)) = (value("web_identity_token_file"), value("role_arn")) {
            let session = value("role_session_name").unwrap_or_else(|| "tagrelay".into());
            return web_identity(call, region, &file, &role, &session).await;
        }
    }
    if env
        .var("AWS_EC2_METADATA_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        return Err(call.not_configured(TRIED));
    }
    instance_metadata(call).await
}

const TRIED: &str = "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, the shared credentials and config files, the instance metadata service";

fn read_optional(call: &Call<'_>, path: &std::path::Path) -> Result<Option<String>, CloudError> {
    match crate::credentials::read_secret_file(path) {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| call.unusable(path.display().to_string(), "not UTF-8 text")),
        Err(e) => Err(call.unusable(
            path.display().to_string(),
            format!("cannot be read: {}", e.kind()),
        )),
    }
}

/// The `key = value` lines of `[section]` in an AWS shared file (INI:
/// `#` and `;` comments, keys case-insensitive).
fn profile_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut values = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.split_whitespace().collect::<Vec<_>>().join(" ") == section;
            continue;
        }
        if inside {
            if let Some((key, value)) = line.split_once('=') {
                values.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
    }
    values
}

/// STS `AssumeRoleWithWebIdentity` with the token in `file` (unsigned, as
/// the SDKs send it).
async fn web_identity(
    call: &Call<'_>,
    region: &str,
    file: &str,
    role: &str,
    session: &str,
) -> Result<AwsKeys, CloudError> {
    let token = call.read_file(file)?;
    let token = token.trim();
    let endpoint = call
        .env
        .var("AWS_ENDPOINT_URL_STS")
        .or_else(|| call.env.var("AWS_ENDPOINT_URL"))
        .map(|e| e.trim_end_matches('/').to_string())
        .unwrap_or_else(|| format!("https://sts.{region}.amazonaws.com"));
    let url = format!("{endpoint}/");
    let body = form(&[
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", role),
        ("RoleSessionName", session),
        ("WebIdentityToken", token),
    ]);
    let request = call
        .proxied
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    let answer = call.send(request, &url, &[token]).await?;
    let text = String::from_utf8_lossy(&answer);
    let element = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = text.find(&open)? + open.len();
        let end = text[start..].find(&close)? + start;
        Some(text[start..end].trim().to_string())
    };
    match (element("AccessKeyId"), element("SecretAccessKey")) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(AwsKeys {
            access_key_id,
            secret_access_key,
            session_token: element("SessionToken"),
        }),
        _ => Err(malformed(call, &url, "no Credentials in the answer")),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InstanceCredentials {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    token: Option<String>,
}

/// IMDSv2: a session token, the instance role's name, its credentials.
async fn instance_metadata(call: &Call<'_>) -> Result<AwsKeys, CloudError> {
    let base = call
        .env
        .var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .unwrap_or("http://169.254.169.254")
        .trim_end_matches('/')
        .to_string();
    let token_url = format!("{base}/latest/api/token");
    let token = call
        .send(
            call.direct
                .put(&token_url)
                .header("x-aws-ec2-metadata-token-ttl-seconds", "21600"),
            &token_url,
            &[],
        )
        .await
        .map_err(|e| match e {
            CloudError::Unreachable { .. } => call.not_configured(TRIED),
            e => e,
        })?;
    let token = String::from_utf8_lossy(&token).trim().to_string();
    let roles_url = format!("{base}/latest/meta-data/iam/security-credentials/");
    let roles = imds_get(call, &roles_url, &token).await?;
    let roles = String::from_utf8_lossy(&roles);
    let role = roles
        .lines()
        .next()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| call.not_configured("the instance has no IAM role"))?;
    let url = format!("{roles_url}{role}");
    let answer = imds_get(call, &url, &token).await?;
    let credentials: InstanceCredentials = call.json(&answer, &url)?;
    Ok(AwsKeys {
        access_key_id: credentials.access_key_id,
        secret_access_key: credentials.secret_access_key,
        session_token: credentials.token,
    })
}

/// A `GET` of the instance metadata with the IMDSv2 session token.
async fn imds_get(call: &Call<'_>, url: &str, token: &str) -> Result<bytes::Bytes, CloudError> {
    let request = call
        .direct
        .get(url)
        .header("x-aws-ec2-metadata-token", token);
    call.send(request, url, &[token]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_read_from_their_sections() {
        let text = "[default]\naws_access_key_id = A\n# comment\n[profile  ci]\nAWS_Access_Key_Id=B\naws_secret_access_key = s=x\n[other]\naws_access_key_id = C\n";
        assert_eq!(
            profile_section(text, "default"),
            vec![("aws_access_key_id".into(), "A".into())]
        );
        assert_eq!(
            profile_section(text, "profile ci"),
            vec![
                ("aws_access_key_id".into(), "B".into()),
                ("aws_secret_access_key".into(), "s=x".into())
            ]
        );
        assert!(profile_section(text, "missing").is_empty());
    }
}
