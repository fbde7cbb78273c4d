//! Signing in as a person does, with a software passkey in place of a
//! browser: the same JSON calls the sign-in pages make.

use dbmon_auth::webauthn::{CreationChallengeResponse, RequestChallengeResponse};
use serde_json::{Value, json};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

#[allow(unused_imports)]
pub use webauthn_authenticator_rs::softpasskey::SoftPasskey as Passkey;

/// An HTTPS client trusting `ca_pem` only (or plain HTTP when None).
pub fn http_client(ca_pem: Option<&[u8]>) -> reqwest::Client {
    let mut b = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10));
    if let Some(pem) = ca_pem {
        b = b
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(pem).expect("CA PEM"));
    }
    b.build().expect("HTTP client")
}

/// `scheme://host:port` of a URL.
pub fn origin_of(url: &str) -> url::Url {
    let u = url::Url::parse(url).expect("URL");
    url::Url::parse(&u.origin().ascii_serialization()).expect("origin")
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> Result<Value, String> {
    let r = http
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = r.status();
    let v: Value = r.json().await.map_err(|e| format!("POST {url}: {e}"))?;
    if status.is_success() {
        Ok(v)
    } else {
        Err(format!("{status}: {}", v["error"].as_str().unwrap_or("")))
    }
}

/// Registers a new passkey with an invite URL (`ORIGIN/invite#SECRET`).
pub async fn register(http: &reqwest::Client, invite_url: &str) -> Result<SoftPasskey, String> {
    let origin = origin_of(invite_url);
    let secret = invite_url.split_once('#').map(|x| x.1).unwrap_or("");
    let start = post(
        http,
        format!("{origin}api/register/start"),
        json!({ "invite": secret }),
    )
    .await?;
    let options: CreationChallengeResponse =
        serde_json::from_value(start["options"].clone()).map_err(|e| e.to_string())?;
    let mut key = SoftPasskey::new(true);
    let cred = key
        .do_registration(origin.clone(), options)
        .map_err(|e| format!("authenticator: {e:?}"))?;
    post(
        http,
        format!("{origin}api/register/finish"),
        json!({ "ceremony": start["ceremony"], "credential": cred }),
    )
    .await?;
    Ok(key)
}

/// Completes a CLI login (`ORIGIN/login/ID`) as `user` with `key`.
pub async fn approve(
    http: &reqwest::Client,
    login_url: &str,
    user: &str,
    key: &mut SoftPasskey,
) -> Result<(), String> {
    let origin = origin_of(login_url);
    let id = login_url.rsplit('/').next().unwrap_or("");
    let start = post(
        http,
        format!("{origin}api/login/start"),
        json!({ "login": id, "user": user }),
    )
    .await?;
    let options: RequestChallengeResponse =
        serde_json::from_value(start["options"].clone()).map_err(|e| e.to_string())?;
    let cred = key
        .do_authentication(origin.clone(), options)
        .map_err(|e| format!("authenticator: {e:?}"))?;
    post(
        http,
        format!("{origin}api/login/finish"),
        json!({ "login": id, "ceremony": start["ceremony"], "credential": cred }),
    )
    .await?;
    Ok(())
}

/// Signs in to the dashboard at `origin` as `user` with `key`: the
/// session cookie the server set (`dbmon_session=TOKEN`) and the whole
/// `Set-Cookie` header, to check its flags.
#[allow(dead_code)] // not every includer of this file signs in to the dashboard
pub async fn signin(
    http: &reqwest::Client,
    origin: &url::Url,
    user: &str,
    key: &mut SoftPasskey,
) -> Result<(String, String), String> {
    let start = post(
        http,
        format!("{origin}api/signin/start"),
        json!({ "user": user }),
    )
    .await?;
    let options: RequestChallengeResponse =
        serde_json::from_value(start["options"].clone()).map_err(|e| e.to_string())?;
    let cred = key
        .do_authentication(origin.clone(), options)
        .map_err(|e| format!("authenticator: {e:?}"))?;
    let url = format!("{origin}api/signin/finish");
    let r = http
        .post(&url)
        .json(&json!({ "ceremony": start["ceremony"], "credential": cred }))
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    if !r.status().is_success() {
        return Err(format!("POST {url}: {}", r.status()));
    }
    let set = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| format!("POST {url}: no Set-Cookie"))?
        .to_string();
    let cookie = set.split(';').next().unwrap_or("").to_string();
    Ok((cookie, set))
}
