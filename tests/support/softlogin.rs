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

/// Asserts `key`'s passkey for `user` through one of the sign-in APIs
/// (`api`: `login` for a CLI login's page, `signin` for the dashboard):
/// `start` with `body`, then `finish` with the ceremony, the credential and
/// `body`. The finish's answer, refused unless it succeeded.
async fn assert_passkey(
    http: &reqwest::Client,
    origin: &url::Url,
    api: &str,
    user: &str,
    body: Value,
    key: &mut SoftPasskey,
) -> Result<reqwest::Response, String> {
    let mut start_body = body.clone();
    start_body["user"] = user.into();
    let start = post(http, format!("{origin}api/{api}/start"), start_body).await?;
    let options: RequestChallengeResponse =
        serde_json::from_value(start["options"].clone()).map_err(|e| e.to_string())?;
    let cred = key
        .do_authentication(origin.clone(), options)
        .map_err(|e| format!("authenticator: {e:?}"))?;
    let mut finish = body;
    finish["ceremony"] = start["ceremony"].clone();
    finish["credential"] = serde_json::to_value(cred).map_err(|e| e.to_string())?;
    let url = format!("{origin}api/{api}/finish");
    let r = http
        .post(&url)
        .json(&finish)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    if !r.status().is_success() {
        let status = r.status();
        let v: Value = r.json().await.unwrap_or_default();
        return Err(format!("{status}: {}", v["error"].as_str().unwrap_or("")));
    }
    Ok(r)
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
    assert_passkey(http, &origin, "login", user, json!({ "login": id }), key).await?;
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
    let r = assert_passkey(http, origin, "signin", user, json!({}), key).await?;
    let set = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .ok_or("the sign-in set no cookie")?
        .to_string();
    let cookie = set.split(';').next().unwrap_or("").to_string();
    Ok((cookie, set))
}
