//! WebAuthn ceremonies in process, with a software authenticator.
#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test or benchmark

use dbmon_auth::limit::Limiter;
use dbmon_auth::passkey::{AuthError, Passkeys, Poll};
use dbmon_auth::store::AuthStore;
use dbmon_auth::{Denied, Role, Verifier};
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::Url;

const PEER: &str = "127.0.0.1:50000";

fn setup(name: &str) -> (Passkeys, Verifier, Url, std::path::PathBuf) {
    dbmon_auth::init();
    let dir = std::env::temp_dir().join(format!("dbmon-ceremony-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = AuthStore::open(&dir).unwrap();
    let verifier = Verifier::new(store);
    let origin = Url::parse("https://localhost:7070").unwrap();
    let p = Passkeys::new(verifier.clone(), &origin, 3_600_000, Limiter::new(600, 100)).unwrap();
    (p, verifier, origin, dir)
}

fn authenticator() -> SoftPasskey {
    SoftPasskey::new(true)
}

fn register(p: &Passkeys, origin: &Url, user: &str, role: Role) -> SoftPasskey {
    let invite = p.store().add_user(user, role, vec![], 60_000).unwrap();
    let mut a = authenticator();
    let (ceremony, who, options) = p.start_registration(&invite, PEER).unwrap();
    assert_eq!(who, user);
    let cred = a.do_registration(origin.clone(), options).unwrap();
    p.finish_registration(&ceremony, &cred, PEER).unwrap();
    a
}

/// A CLI login completed by `a`; returns the token the poll hands out.
fn login(p: &Passkeys, origin: &Url, user: &str, a: &mut SoftPasskey) -> Result<String, AuthError> {
    let started = p.start_login(PEER)?;
    assert!(matches!(p.poll(&started.device_code, PEER)?, Poll::Pending));
    assert_eq!(
        p.user_code(&started.login_id).as_deref(),
        Some(started.user_code.as_str())
    );
    let (ceremony, options) = p.start_assertion(&started.login_id, user, PEER)?;
    let cred = a.do_authentication(origin.clone(), options).unwrap();
    p.finish_assertion(&started.login_id, &ceremony, &cred, PEER)?;
    match p.poll(&started.device_code, PEER)? {
        Poll::Approved { token, user: u } => {
            assert_eq!(u, user);
            assert!(
                matches!(p.poll(&started.device_code, PEER)?, Poll::Expired),
                "handed out once"
            );
            Ok(token)
        }
        _ => panic!("login approved but the poll did not hand out the token"),
    }
}

#[test]
fn register_then_login_gives_a_working_token() {
    let (p, v, origin, dir) = setup("ok");
    let mut a = register(&p, &origin, "alice", Role::Viewer);
    let token = login(&p, &origin, "alice", &mut a).unwrap();
    let grant = v.verify(&token, dbmon_auth::store::now_ms()).unwrap();
    assert_eq!(grant.user, "alice");
    assert_eq!(grant.role, Role::Viewer);
    let s = p.store().snapshot();
    assert_eq!(s.users["alice"].credentials.len(), 1);
    assert!(s.users["alice"].credentials[0].last_used_ms.is_some());
    assert!(s.invites.is_empty(), "the invite is spent");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_user_may_have_several_passkeys_and_lose_one() {
    let (p, v, origin, dir) = setup("several");
    let mut laptop = register(&p, &origin, "hana", Role::Operator);
    let second = p.store().invite("hana", 60_000).unwrap();
    let mut phone = SoftPasskey::new(true);
    let (ceremony, _, options) = p.start_registration(&second, PEER).unwrap();
    let cred = phone.do_registration(origin.clone(), options).unwrap();
    p.finish_registration(&ceremony, &cred, PEER).unwrap();
    assert_eq!(p.store().snapshot().users["hana"].credentials.len(), 2);
    let t1 = login(&p, &origin, "hana", &mut laptop).unwrap();
    let t2 = login(&p, &origin, "hana", &mut phone).unwrap();
    let now = dbmon_auth::store::now_ms();
    let g1 = v.verify(&t1, now).unwrap();
    let g2 = v.verify(&t2, now).unwrap();
    assert_ne!(g1.login, g2.login, "each login has its own root key");
    // The phone is lost: its passkey goes, with its logins; the laptop's stay.
    let phone_id = p.store().snapshot().users["hana"].credentials[1].id.clone();
    p.store().remove_credential("hana", &phone_id).unwrap();
    assert!(matches!(v.verify(&t2, now), Err(Denied::Revoked(_))));
    assert!(v.verify(&t1, now).is_ok());
    assert!(login(&p, &origin, "hana", &mut laptop).is_ok());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_invite_works_once() {
    let (p, _, origin, dir) = setup("once");
    let invite = p
        .store()
        .add_user("bob", Role::Viewer, vec![], 60_000)
        .unwrap();
    let (c1, _, o1) = p.start_registration(&invite, PEER).unwrap();
    let (c2, _, o2) = p.start_registration(&invite, PEER).unwrap();
    let cred1 = authenticator().do_registration(origin.clone(), o1).unwrap();
    let cred2 = authenticator().do_registration(origin.clone(), o2).unwrap();
    p.finish_registration(&c1, &cred1, PEER).unwrap();
    let e = p.finish_registration(&c2, &cred2, PEER).unwrap_err();
    assert!(
        e.to_string().contains("invite is unknown, used or expired"),
        "{e}"
    );
    assert!(matches!(
        p.start_registration(&invite, PEER),
        Err(AuthError::BadInvite)
    ));
    assert_eq!(p.store().snapshot().users["bob"].credentials.len(), 1);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_expired_invite_is_refused() {
    let (p, _, _, dir) = setup("expired");
    let invite = p
        .store()
        .add_user("carol", Role::Viewer, vec![], -1)
        .unwrap();
    assert!(matches!(
        p.start_registration(&invite, PEER),
        Err(AuthError::BadInvite)
    ));
    assert!(matches!(
        p.start_registration("not-an-invite", PEER),
        Err(AuthError::BadInvite)
    ));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn another_origin_is_refused() {
    let (p, _, origin, dir) = setup("origin");
    // Registration relayed by a phishing site: the authenticator signs for
    // the site it is on.
    let invite = p
        .store()
        .add_user("dave", Role::Viewer, vec![], 60_000)
        .unwrap();
    let (ceremony, _, mut options) = p.start_registration(&invite, PEER).unwrap();
    options.public_key.rp.id = "evil.example".into();
    let evil = Url::parse("https://evil.example").unwrap();
    let cred = authenticator()
        .do_registration(evil.clone(), options)
        .unwrap();
    assert!(matches!(
        p.finish_registration(&ceremony, &cred, PEER),
        Err(AuthError::Refused(_))
    ));

    // The same for a login.
    let mut a = register(&p, &origin, "erin", Role::Viewer);
    let started = p.start_login(PEER).unwrap();
    let (ceremony, mut options) = p.start_assertion(&started.login_id, "erin", PEER).unwrap();
    options.public_key.rp_id = "evil.example".into();
    let e = a.do_authentication(evil, options);
    // The authenticator holds no credential for that site; either way no
    // assertion for this server comes out of it.
    if let Ok(cred) = e {
        assert!(matches!(
            p.finish_assertion(&started.login_id, &ceremony, &cred, PEER),
            Err(AuthError::Refused(_))
        ));
    }
    assert!(matches!(
        p.poll(&started.device_code, PEER).unwrap(),
        Poll::Pending
    ));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_replayed_assertion_is_refused() {
    let (p, _, origin, dir) = setup("replay");
    let mut a = register(&p, &origin, "frank", Role::Viewer);
    let started = p.start_login(PEER).unwrap();
    let (ceremony, options) = p.start_assertion(&started.login_id, "frank", PEER).unwrap();
    let cred = a.do_authentication(origin.clone(), options).unwrap();
    p.finish_assertion(&started.login_id, &ceremony, &cred, PEER)
        .unwrap();
    // Same ceremony again: consumed.
    assert!(
        p.finish_assertion(&started.login_id, &ceremony, &cred, PEER)
            .is_err()
    );
    // A new login, answered with the old assertion: another challenge.
    let again = p.start_login(PEER).unwrap();
    let (ceremony2, _) = p.start_assertion(&again.login_id, "frank", PEER).unwrap();
    assert!(matches!(
        p.finish_assertion(&again.login_id, &ceremony2, &cred, PEER),
        Err(AuthError::Refused(_))
    ));
    assert!(matches!(
        p.poll(&again.device_code, PEER).unwrap(),
        Poll::Pending
    ));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_unknown_credential_is_refused() {
    let (p, _, origin, dir) = setup("unknown");
    let _alice = register(&p, &origin, "grace", Role::Viewer);
    let mut mallory = register(&p, &origin, "mallory", Role::Viewer);
    let mallory_ids = p.store().snapshot().users["mallory"].credentials[0]
        .passkey
        .cred_id()
        .clone();
    // Mallory answers grace's challenge with her own passkey.
    let started = p.start_login(PEER).unwrap();
    let (ceremony, mut options) = p.start_assertion(&started.login_id, "grace", PEER).unwrap();
    options.public_key.allow_credentials[0].id = mallory_ids;
    let cred = mallory.do_authentication(origin.clone(), options).unwrap();
    assert!(matches!(
        p.finish_assertion(&started.login_id, &ceremony, &cred, PEER),
        Err(AuthError::Refused(_))
    ));
    // A user without passkeys, or none at all: the same answer.
    assert!(matches!(
        p.start_assertion(&started.login_id, "nobody", PEER),
        Err(AuthError::NoPasskey(_))
    ));
    // A removed passkey no longer logs in, and its logins are revoked.
    let token = login(&p, &origin, "mallory", &mut mallory).unwrap();
    let id = p.store().snapshot().users["mallory"].credentials[0]
        .id
        .clone();
    p.store().remove_credential("mallory", &id[..8]).unwrap();
    assert!(matches!(
        Verifier::new(p.store().clone()).verify(&token, dbmon_auth::store::now_ms()),
        Err(Denied::Revoked(_))
    ));
    assert!(matches!(
        login(&p, &origin, "mallory", &mut mallory),
        Err(AuthError::NoPasskey(_))
    ));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn login_attempts_are_rate_limited() {
    dbmon_auth::init();
    let dir = std::env::temp_dir().join(format!("dbmon-ceremony-rate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let v = Verifier::new(AuthStore::open(&dir).unwrap());
    let origin = Url::parse("https://localhost:7070").unwrap();
    let p = Passkeys::new(v, &origin, 60_000, Limiter::new(5, 5)).unwrap();
    for _ in 0..5 {
        p.start_login(PEER).unwrap();
    }
    assert!(matches!(
        p.start_login(PEER),
        Err(AuthError::RateLimited(_))
    ));
    assert!(p.start_login("10.1.2.3:4000").is_ok(), "per address");
    let _ = std::fs::remove_dir_all(dir);
}
