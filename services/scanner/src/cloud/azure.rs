//! `provider: azure`: an Azure AD access token for the workload (workload
//! identity federation when `AZURE_FEDERATED_TOKEN_FILE` is set, else the
//! managed identity endpoint: `IDENTITY_ENDPOINT`, or the instance
//! metadata service), exchanged at the registry's `/oauth2/exchange` for
//! an ACR refresh token, which the registry then takes as the password of
//! the all-zero user (as `az acr login --expose-token` gives it).

use std::time::SystemTime;

use serde::Deserialize;

use super::{expires_in, form, Call, CloudError};
use crate::credentials::Credentials;

/// The username ACR takes with a refresh token.
const USERNAME: &str = "00000000-0000-0000-0000-000000000000";

/// The audience of the AAD token ACR exchanges.
const RESOURCE: &str = "https://management.azure.com/";

#[derive(Deserialize)]
struct AadAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
    #[serde(default)]
    expires_on: Option<serde_json::Value>,
}

impl AadAnswer {
    /// `expires_on` (epoch seconds, a number or a string) or `expires_in`.
    fn expires(&self) -> SystemTime {
        let seconds = |v: &Option<serde_json::Value>| match v {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.parse().ok(),
            _ => None,
        };
        match (seconds(&self.expires_on), seconds(&self.expires_in)) {
            (Some(on), _) => SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(on),
            (None, Some(lifetime)) => expires_in(lifetime),
            (None, None) => SystemTime::now(),
        }
    }
}

#[derive(Deserialize)]
struct ExchangeAnswer {
    refresh_token: String,
}

/// The ACR credential for `registry` and when it expires.
pub(super) async fn login(
    call: &Call<'_>,
    registry: &str,
    scheme: &str,
) -> Result<(Credentials, SystemTime), CloudError> {
    let aad = aad_token(call).await?;
    let url = format!("{scheme}://{registry}/oauth2/exchange");
    let service = registry.split(':').next().unwrap_or(registry);
    let mut fields = vec![
        ("grant_type", "access_token"),
        ("service", service),
        ("access_token", aad.access_token.as_str()),
    ];
    if let Some(tenant) = call.env.var("AZURE_TENANT_ID") {
        fields.push(("tenant", tenant));
    }
    let request = call
        .proxied
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&fields));
    let answer = call.send(request, &url, &[&aad.access_token]).await?;
    let answer: ExchangeAnswer = call.json(&answer, &url)?;
    Ok((
        Credentials::Basic {
            username: USERNAME.to_string(),
            password: answer.refresh_token,
        },
        aad.expires(),
    ))
}

async fn aad_token(call: &Call<'_>) -> Result<AadAnswer, CloudError> {
    let env = call.env;
    if let Some(file) = env.var("AZURE_FEDERATED_TOKEN_FILE") {
        let (Some(client), Some(tenant)) = (env.var("AZURE_CLIENT_ID"), env.var("AZURE_TENANT_ID"))
        else {
            return Err(call.unusable(
                "AZURE_FEDERATED_TOKEN_FILE",
                "workload identity also needs AZURE_CLIENT_ID and AZURE_TENANT_ID",
            ));
        };
        let assertion = call.read_file(file)?;
        let assertion = assertion.trim();
        let authority = env
            .var("AZURE_AUTHORITY_HOST")
            .unwrap_or("https://login.microsoftonline.com/")
            .trim_end_matches('/');
        let url = format!("{authority}/{tenant}/oauth2/v2.0/token");
        let scope = format!("{RESOURCE}.default");
        let request = call
            .proxied
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(&[
                ("client_id", client),
                ("scope", &scope),
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion),
            ]));
        let answer = call.send(request, &url, &[assertion]).await?;
        return call.json(&answer, &url);
    }
    let client_id = env.var("AZURE_CLIENT_ID");
    let (url, request) = match env.var("IDENTITY_ENDPOINT") {
        Some(endpoint) => {
            let url = managed_identity_url(call, endpoint, "2019-08-01", client_id)?;
            let mut request = call.direct.get(url.as_str());
            if let Some(header) = env.var("IDENTITY_HEADER") {
                request = request.header("X-IDENTITY-HEADER", header);
            }
            (url, request)
        }
        None => {
            let url = managed_identity_url(call, INSTANCE_METADATA, "2018-02-01", client_id)?;
            let request = call.direct.get(url.as_str()).header("Metadata", "true");
            (url, request)
        }
    };
    let secret_header = env.var("IDENTITY_HEADER").unwrap_or_default();
    let answer = call
        .send(request, url.as_str(), &[secret_header])
        .await
        .map_err(|e| match e {
            CloudError::Unreachable { reason, .. } => call.not_configured(&format!(
                "AZURE_FEDERATED_TOKEN_FILE is not set and no managed identity endpoint answers: {reason}"
            )),
            e => e,
        })?;
    call.json(&answer, url.as_str())
}

/// The instance metadata service's managed identity token endpoint.
const INSTANCE_METADATA: &str = "http://169.254.169.254/metadata/identity/oauth2/token";

/// A managed identity token request's URL: `endpoint` with the API
/// version, the resource and, for a user-assigned identity, its client id.
fn managed_identity_url(
    call: &Call<'_>,
    endpoint: &str,
    api_version: &str,
    client_id: Option<&str>,
) -> Result<url::Url, CloudError> {
    let mut url = url::Url::parse(endpoint).map_err(|e| call.unusable(endpoint, e.to_string()))?;
    url.query_pairs_mut()
        .append_pair("api-version", api_version)
        .append_pair("resource", RESOURCE);
    if let Some(client) = client_id {
        url.query_pairs_mut().append_pair("client_id", client);
    }
    Ok(url)
}
