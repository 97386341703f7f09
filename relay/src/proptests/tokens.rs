//! Token verification (`auth::Authenticator`): generated claims signed with the right key, and
//! mutated or random tokens. Never a panic; accepted only when every rule holds.

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

use super::{mutated, MAX_ERROR};
use crate::core::auth::{Authenticator, ClaimRules};

const SECRET: &str = "proptest-secret-0123456789abcdef";
const ROLES: &[&str] = &["anon", "authenticated", "service_role", "postgres", ""];

fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

fn authenticator(rules: ClaimRules) -> Authenticator {
    Authenticator::new(SECRET, vec!["anon".into(), "authenticated".into()], true).with_rules(rules)
}

/// A date claim: valid numbers far and near, fractions, and things that are not dates.
fn date() -> impl Strategy<Value = Option<Value>> {
    let now = now();
    proptest::option::of(prop_oneof![
        (-100_000.0f64..100_000.0).prop_map(move |d| json!(now + d)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        Just(json!(u64::MAX)),
        Just(json!(1e300)),
        ".{0,12}".prop_map(|s| json!(s)),
        Just(Value::Null),
        Just(json!([1, 2])),
    ])
}

fn claims() -> impl Strategy<Value = Map<String, Value>> {
    (
        date(),
        date(),
        proptest::option::of(prop_oneof![
            proptest::sample::select(ROLES).prop_map(|r| json!(r)),
            Just(json!(5))
        ]),
        proptest::option::of(prop_oneof![
            Just(json!("app")),
            Just(json!(["x", "app"])),
            Just(json!(["x"])),
            Just(json!(3))
        ]),
        proptest::option::of(".{0,20}"),
    )
        .prop_map(|(exp, nbf, role, aud, sub)| {
            let mut m = Map::new();
            for (k, v) in [("exp", exp), ("nbf", nbf), ("role", role), ("aud", aud)] {
                if let Some(v) = v {
                    m.insert(k.into(), v);
                }
            }
            if let Some(s) = sub {
                m.insert("sub".into(), json!(s));
            }
            m
        })
}

fn sign(claims: &Map<String, Value>) -> String {
    encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

/// What the rules say about `claims`, with a margin of a second around "now".
fn expected(c: &Map<String, Value>, rules: &ClaimRules) -> Option<bool> {
    let now = now();
    let date = |k: &str| c.get(k).map(|v| v.as_f64().filter(|f| f.is_finite() && *f >= 0.0 && v.is_number()));
    let exp = match date("exp") {
        Some(Some(e)) => e,
        _ => return Some(false),
    };
    if (exp - now).abs() < 2.0 {
        return None;
    }
    if exp < now {
        return Some(false);
    }
    match date("nbf") {
        Some(None) => return Some(false),
        Some(Some(n)) if (n - now).abs() < 2.0 => return None,
        Some(Some(n)) if n > now => return Some(false),
        _ => {}
    }
    if !rules.audience.is_empty() {
        let ok = match c.get("aud") {
            Some(Value::String(s)) => rules.audience.contains(s),
            Some(Value::Array(a)) => {
                a.iter().any(|v| v.as_str().is_some_and(|s| rules.audience.iter().any(|x| x == s)))
            }
            _ => false,
        };
        if !ok {
            return Some(false);
        }
    }
    let role = match c.get("role") {
        Some(Value::String(r)) => r.clone(),
        None => match &rules.default_role {
            Some(d) => d.clone(),
            None => return Some(false),
        },
        Some(_) => return Some(false),
    };
    Some(role == "anon" || role == "authenticated")
}

fn rules() -> impl Strategy<Value = ClaimRules> {
    (any::<bool>(), any::<bool>()).prop_map(|(aud, default)| ClaimRules {
        audience: if aud { vec!["app".into()] } else { vec![] },
        issuer: vec![],
        default_role: default.then(|| "authenticated".to_string()),
    })
}

proptest! {
    #[test]
    fn proptest_signed_tokens_are_accepted_exactly_when_every_claim_rule_holds(c in claims(), rules in rules()) {
        let got = authenticator(rules.clone()).authenticate(Some(&sign(&c)));
        if let Err(e) = &got {
            prop_assert!(!e.to_string().is_empty() && e.to_string().len() <= MAX_ERROR, "{e}");
        }
        if let Some(want) = expected(&c, &rules) {
            prop_assert_eq!(got.is_ok(), want, "{:?} with {:?}: {:?}", c, rules, got);
        }
        if let Ok(id) = got {
            let seen: Value = serde_json::from_str(&id.claims).unwrap();
            prop_assert_eq!(&seen["role"], &json!(id.role), "Postgres sees the role used");
        }
    }

    #[test]
    fn proptest_mutated_tokens_are_refused(
        (token, bad) in claims().prop_flat_map(|c| { let t = sign(&c); (Just(t.clone()), mutated(t)) })
    ) {
        // An empty token is no token: anonymous, which this authenticator allows.
        prop_assume!(!bad.is_empty());
        let got = authenticator(ClaimRules::default()).authenticate(Some(&bad));
        if bad != token {
            prop_assert!(got.is_err(), "a changed token was accepted: {}", bad);
        }
        if let Err(e) = got {
            prop_assert!(e.to_string().len() <= MAX_ERROR);
        }
    }

    #[test]
    fn proptest_random_text_is_never_a_token(text in "[A-Za-z0-9_.=-]{0,200}") {
        prop_assume!(!text.is_empty());
        let got = authenticator(ClaimRules::default()).authenticate(Some(&text));
        prop_assert!(got.is_err());
    }
}
