//! HTTP plumbing shared by the Prometheus and web providers: a client per measurement with the
//! metric's timeout and TLS setting, and the `authentication` block (OAuth2 client
//! credentials, basic auth) turned into an `Authorization` header.

use prometheus_http_query::reqwest;
use ramp_api::analysis::{Authentication, OAuth2Config};
use std::time::Duration;

/// Builds the client for one measurement. `insecure` skips certificate verification, as the
/// metric asks; the TLS provider is the process-wide one (aws-lc-rs), installed by binaries.
pub fn client(timeout: Duration, insecure: bool) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .danger_accept_invalid_certs(insecure)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", error_chain(&e)))
}

/// A timeout in seconds from the API (negative means zero, which validation reports).
pub fn seconds(value: i64) -> Duration {
    Duration::from_secs(u64::try_from(value).unwrap_or(0))
}

/// The `Authorization` header value for the metric's authentication, if any.
pub async fn authorization(
    client: &reqwest::Client,
    authentication: Option<&Authentication>,
) -> Result<Option<String>, String> {
    let Some(auth) = authentication else {
        return Ok(None);
    };
    if auth
        .sigv4
        .as_ref()
        .is_some_and(|s| s.region.is_some() || s.profile.is_some() || s.role_arn.is_some())
    {
        return Err("sigv4 authentication is not supported by Ramp".to_owned());
    }
    if let Some(oauth2) = auth
        .oauth2
        .as_ref()
        .filter(|o| o.token_url.as_deref().is_some_and(|u| !u.is_empty()))
    {
        let token = oauth2_token(client, oauth2).await?;
        return Ok(Some(format!("Bearer {token}")));
    }
    if let Some(basic) = auth
        .basic_auth
        .as_ref()
        .filter(|b| b.username.is_some() || b.password.is_some())
    {
        let credentials = format!(
            "{}:{}",
            basic.username.as_deref().unwrap_or_default(),
            basic.password.as_deref().unwrap_or_default()
        );
        return Ok(Some(format!("Basic {}", base64(credentials.as_bytes()))));
    }
    Ok(None)
}

/// OAuth2 client-credentials grant: posts the client's id and secret to the token URL and
/// returns the access token.
async fn oauth2_token(client: &reqwest::Client, oauth2: &OAuth2Config) -> Result<String, String> {
    let token_url = oauth2.token_url.as_deref().unwrap_or_default();
    let scopes = oauth2.scopes.as_deref().unwrap_or_default().join(" ");
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(id) = oauth2.client_id.as_deref() {
        form.push(("client_id", id));
    }
    if let Some(secret) = oauth2.client_secret.as_deref() {
        form.push(("client_secret", secret));
    }
    if !scopes.is_empty() {
        form.push(("scope", &scopes));
    }
    let response = client
        .post(token_url)
        .form(&form)
        .send()
        .await
        .map_err(|e| format!("OAuth2 token request to {token_url}: {}", error_chain(&e)))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| {
        format!(
            "OAuth2 token response from {token_url}: {}",
            error_chain(&e)
        )
    })?;
    if !status.is_success() {
        return Err(format!(
            "OAuth2 token request to {token_url} answered {}",
            status.as_u16()
        ));
    }
    let json: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("OAuth2 token response from {token_url} is not JSON: {e}"))?;
    json.get("access_token")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("OAuth2 token response from {token_url} has no access_token"))
}

/// An error with its causes, which reqwest keeps in the source chain (timeouts, refused
/// connections).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }
}
