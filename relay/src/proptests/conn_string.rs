//! The database connection string (`pg::db::split_tls_params`): the `ssl*` parameters come out,
//! everything else reaches tokio-postgres unchanged, in both forms.

use proptest::prelude::*;

use crate::pg::db::{split_tls_params, Database};

/// libpq `key=value` values, quoted or not.
fn value() -> impl Strategy<Value = String> {
    "[A-Za-z0-9 '\\\\/._=-]{0,16}"
}

fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

proptest! {
    #[test]
    fn proptest_any_text_is_split_or_refused_without_panic(text in ".{0,200}") {
        if let Ok((rest, _)) = split_tls_params(&text) {
            let _ = rest.parse::<tokio_postgres::Config>();
        }
        let _ = Database::parse(&text);
    }

    #[test]
    fn proptest_key_value_strings_keep_every_value(password in value(), app in value(), root in value()) {
        let text = format!(
            "host=db.example port=5433 user=u password={} application_name={} sslmode=require sslrootcert={}",
            quote(&password), quote(&app), quote(&root)
        );
        let (rest, tls) = split_tls_params(&text).unwrap();
        prop_assert_eq!(tls.sslmode.as_deref(), Some("require"));
        prop_assert_eq!(tls.sslrootcert.as_deref(), Some(root.as_str()));
        let cfg: tokio_postgres::Config = rest.parse().unwrap();
        prop_assert_eq!(cfg.get_password(), Some(password.as_bytes()));
        prop_assert_eq!(cfg.get_application_name(), Some(app.as_str()));
    }

    #[test]
    fn proptest_url_query_keeps_foreign_parameters_in_order(names in proptest::collection::vec("[a-z_]{1,10}", 0..5)) {
        let foreign: Vec<String> = names.iter().filter(|n| !n.starts_with("ssl")).map(|n| format!("{n}=v")).collect();
        let mut all = foreign.clone();
        all.insert(all.len() / 2, "sslmode=disable".into());
        let (rest, tls) = split_tls_params(&format!("postgres://u@h/d?{}", all.join("&"))).unwrap();
        prop_assert_eq!(tls.sslmode.as_deref(), Some("disable"));
        let want = if foreign.is_empty() { "postgres://u@h/d".to_string() } else { format!("postgres://u@h/d?{}", foreign.join("&")) };
        prop_assert_eq!(rest, want);
    }
}
