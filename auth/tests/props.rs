//! Property tests of token verification, the parser every caller's input
//! reaches: any string is refused with a reason, and a real token changed
//! in any one place is refused, never read as another grant.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use dbmon_auth::Verifier;
use dbmon_auth::perms::Role;
use dbmon_auth::store::AuthStore;
use proptest::prelude::*;
use std::sync::OnceLock;

fn setup() -> &'static (Verifier, String) {
    static S: OnceLock<(Verifier, String)> = OnceLock::new();
    S.get_or_init(|| {
        dbmon_auth::init();
        let dir = std::env::temp_dir().join(format!("dbmon-auth-props-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = AuthStore::open(&dir).unwrap();
        store
            .add_user("alice", Role::Viewer, vec![], 60_000)
            .unwrap();
        let verifier = Verifier::new(store);
        let (_, token) = verifier
            .new_login("alice", "cred", "127.0.0.1", 3_600_000)
            .unwrap();
        (verifier, token)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_string_is_refused_with_a_reason(s in "\\PC{0,400}") {
        let (v, _) = setup();
        let err = v.verify(&s, dbmon_auth::store::now_ms()).unwrap_err();
        prop_assert!(!err.to_string().is_empty());
    }

    #[test]
    fn a_token_changed_anywhere_is_refused(at in any::<usize>(), c in "[A-Za-z0-9_=-]") {
        let (v, token) = setup();
        let mut chars: Vec<char> = token.chars().collect();
        let at = at % chars.len();
        let new = c.chars().next().unwrap();
        prop_assume!(chars[at] != new);
        chars[at] = new;
        let changed: String = chars.into_iter().collect();
        // base64 padding bits may leave the decoded bytes the same: then it
        // is the same token, and only then may it pass.
        if let Ok(g) = v.verify(&changed, dbmon_auth::store::now_ms()) {
            let original = v.verify(token, dbmon_auth::store::now_ms()).unwrap();
            prop_assert_eq!(g, original);
        }
    }
}
