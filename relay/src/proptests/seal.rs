//! Sealed logical-message bodies (`realtime_core::seal`): what any database login can put in a
//! `realtime:` logical message. Only a body sealed with the key, for its prefix, verifies;
//! anything generated or mutated is refused with a short error and never panics.

use proptest::prelude::*;
use realtime_core::seal::{seal, Sealed};

use super::{mutated_bytes, MAX_ERROR};

const KEY: [u8; 32] = [42; 32];

proptest! {
    #[test]
    fn proptest_sealed_bodies_verify_for_their_key_and_prefix_only(id in 0i64..i64::MAX, body in ".{0,200}", other in any::<[u8; 32]>()) {
        let s = seal(id, &KEY, "realtime:broadcast", &body).unwrap();
        let p = Sealed::parse(s.as_bytes()).unwrap();
        prop_assert_eq!(p.key_id, id);
        prop_assert_eq!(p.verify(&KEY, "realtime:broadcast").unwrap(), body.as_bytes());
        prop_assert!(p.verify(&KEY, "realtime:presence").is_err());
        if other != KEY {
            prop_assert!(p.verify(&other, "realtime:broadcast").is_err());
        }
    }

    #[test]
    fn proptest_mutated_sealed_bodies_never_verify_unless_unchanged(bytes in mutated_bytes(
        seal(7, &KEY, "realtime:presence", r#"{"op":"track","channel":"c"}"#).unwrap().into_bytes()
    )) {
        let original = seal(7, &KEY, "realtime:presence", r#"{"op":"track","channel":"c"}"#).unwrap();
        match Sealed::parse(&bytes).map_err(|e| e.to_string()).and_then(|p| {
            p.verify(&KEY, "realtime:presence").map(<[u8]>::to_vec).map_err(|e| e.to_string())
        }) {
            Ok(content) => {
                prop_assert_eq!(&bytes[..], original.as_bytes(), "only the unchanged body verifies");
                prop_assert_eq!(&content[..], br#"{"op":"track","channel":"c"}"#);
            }
            Err(e) => prop_assert!(!e.is_empty() && e.len() <= MAX_ERROR),
        }
    }

    #[test]
    fn proptest_arbitrary_bodies_are_refused_with_a_short_error(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        match Sealed::parse(&bytes) {
            Ok(p) => prop_assert!(p.verify(&KEY, "realtime:broadcast").is_err()),
            Err(e) => prop_assert!(e.to_string().len() <= MAX_ERROR),
        }
    }
}
