//! `provider: gcp`: an OAuth2 access token, used as the password of
//! `oauth2accesstoken` against `gcr.io` and Artifact Registry. From the
//! service account key file `GOOGLE_APPLICATION_CREDENTIALS` names (an
//! RS256 JWT signed with its key, exchanged at its `token_uri`) when set,
//! else from the GCE / GKE metadata server (workload identity).

use std::time::SystemTime;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use super::{expires_in, form, Call, CloudError};
use crate::credentials::Credentials;

/// The username Google's registries take with an access token.
const USERNAME: &str = "oauth2accesstoken";

/// The scope asked for (what `gcloud auth print-access-token` has).
const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The JWT bearer grant (RFC 7523).
const JWT_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    client_email: String,
    #[serde(default)]
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

/// The access token and when it expires.
pub(super) async fn login(call: &Call<'_>) -> Result<(Credentials, SystemTime), CloudError> {
    let (token, expires) = match call.env.var("GOOGLE_APPLICATION_CREDENTIALS") {
        Some(file) => key_file(call, file).await?,
        None => metadata_server(call).await?,
    };
    Ok((
        Credentials::Basic {
            username: USERNAME.to_string(),
            password: token,
        },
        expires,
    ))
}

async fn key_file(call: &Call<'_>, file: &str) -> Result<(String, SystemTime), CloudError> {
    let text = call.read_file(file)?;
    let key: KeyFile = serde_json::from_str(&text).map_err(|e| {
        call.unusable(
            file,
            format!("not a key file: line {} column {}", e.line(), e.column()),
        )
    })?;
    if key.kind != "service_account" {
        return Err(call.unusable(
            file,
            format!("credentials of type {:?} are not supported; use a service_account key or the metadata server", key.kind),
        ));
    }
    let token_uri = key
        .token_uri
        .clone()
        .unwrap_or_else(|| "https://oauth2.googleapis.com/token".to_string());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let claims = Claims {
        iss: &key.client_email,
        scope: SCOPE,
        aud: &token_uri,
        iat: now,
        exp: now + 3600,
    };
    let signing_key = EncodingKey::from_rsa_pem(key.private_key.as_bytes())
        .map_err(|_| call.unusable(file, "private_key is not an RSA key in PEM"))?;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = key.private_key_id.clone();
    let assertion = jsonwebtoken::encode(&header, &claims, &signing_key)
        .map_err(|e| call.unusable(file, format!("cannot sign: {e}")))?;
    let request = call
        .proxied
        .post(&token_uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", JWT_GRANT),
            ("assertion", &assertion),
        ]));
    let answer = call.send(request, &token_uri, &[&assertion]).await?;
    let answer: TokenAnswer = call.json(&answer, &token_uri)?;
    Ok((
        answer.access_token,
        expires_in(answer.expires_in.unwrap_or(0)),
    ))
}

async fn metadata_server(call: &Call<'_>) -> Result<(String, SystemTime), CloudError> {
    let host = call
        .env
        .var("GCE_METADATA_HOST")
        .unwrap_or("metadata.google.internal");
    let url = format!("http://{host}/computeMetadata/v1/instance/service-accounts/default/token");
    let request = call.direct.get(&url).header("Metadata-Flavor", "Google");
    let answer = call.send(request, &url, &[]).await.map_err(|e| match e {
        CloudError::Unreachable { reason, .. } => call.not_configured(&format!(
            "GOOGLE_APPLICATION_CREDENTIALS is not set and the metadata server {host} does not answer: {reason}"
        )),
        e => e,
    })?;
    let answer: TokenAnswer = call.json(&answer, &url)?;
    Ok((
        answer.access_token,
        expires_in(answer.expires_in.unwrap_or(0)),
    ))
}
