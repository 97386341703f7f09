//! The console's flags (`--admin-token`, `--admin-token-file`, `--admin-origin`) and their
//! validation into [`AdminSettings`].

use clap::Args;

/// Shortest admin token accepted: 32 bytes, at least 128 bits from any reasonable generator.
pub const MIN_TOKEN_BYTES: usize = 32;

/// Flags of the admin console (part of the server's flags).
#[derive(Debug, Clone, Default, Args)]
pub struct AdminArgs {
    /// Turns the admin console at /admin on, with this secret as its credential (at least 32
    /// bytes; e.g. `openssl rand -base64 32`). Off when neither this nor --admin-token-file is set.
    #[arg(long, env = "REALTIME_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Reads the admin token from this file (surrounding whitespace ignored), so it appears
    /// neither on the command line nor in the environment.
    #[arg(long, env = "REALTIME_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<String>,
    /// Origins (scheme://host[:port]) besides the relay's own address the console may be used
    /// from, comma-separated: the public origin of a proxy that rewrites the Host header.
    #[arg(long, env = "REALTIME_ADMIN_ORIGIN", default_value = "")]
    pub admin_origin: String,
}

/// Why the console's flags were refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminConfigError {
    #[error("--admin-token and --admin-token-file are both set; use one")]
    BothTokens,
    #[error("--admin-token-file {path}: {source}")]
    ReadToken { path: String, source: std::io::Error },
    #[error("--admin-token / REALTIME_ADMIN_TOKEN is too short ({0} bytes); use at least {MIN_TOKEN_BYTES} random bytes")]
    ShortToken(usize),
    #[error("--admin-origin / REALTIME_ADMIN_ORIGIN: '{0}' is not an origin like https://admin.example.com")]
    BadOrigin(String),
}

/// The console's validated settings. `Debug` never shows the token.
#[derive(Clone, Default)]
pub struct AdminSettings {
    token: Option<String>,
    /// Extra allowed origins, lowercase, without a trailing slash.
    pub origins: Vec<String>,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("enabled", &self.token.is_some())
            .field("origins", &self.origins)
            .finish()
    }
}

impl AdminSettings {
    /// The admin token, when the console is on.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Whether the console is on.
    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }
}

impl TryFrom<AdminArgs> for AdminSettings {
    type Error = AdminConfigError;

    fn try_from(a: AdminArgs) -> Result<Self, AdminConfigError> {
        let token = match (a.admin_token.filter(|t| !t.is_empty()), a.admin_token_file) {
            (Some(_), Some(_)) => return Err(AdminConfigError::BothTokens),
            (Some(t), None) => Some(t),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|source| AdminConfigError::ReadToken { path, source })?;
                Some(text.trim().to_string())
            }
            (None, None) => None,
        };
        if let Some(t) = &token {
            if t.len() < MIN_TOKEN_BYTES {
                return Err(AdminConfigError::ShortToken(t.len()));
            }
        }
        let mut origins = Vec::new();
        for o in a.admin_origin.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let o = o.trim_end_matches('/').to_ascii_lowercase();
            let rest = o.strip_prefix("https://").or_else(|| o.strip_prefix("http://"));
            if rest.is_none_or(|r| r.is_empty() || r.contains(['/', '?', '#', ' '])) {
                return Err(AdminConfigError::BadOrigin(o));
            }
            origins.push(o);
        }
        Ok(AdminSettings { token, origins })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(token: Option<&str>, file: Option<&str>, origin: &str) -> AdminArgs {
        AdminArgs {
            admin_token: token.map(String::from),
            admin_token_file: file.map(String::from),
            admin_origin: origin.into(),
        }
    }

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn console_is_off_without_a_token_and_on_with_one() {
        assert!(!AdminSettings::try_from(args(None, None, "")).unwrap().enabled());
        assert!(!AdminSettings::try_from(args(Some(""), None, "")).unwrap().enabled());
        let s = AdminSettings::try_from(args(Some(TOKEN), None, "")).unwrap();
        assert_eq!(s.token(), Some(TOKEN));
        assert!(!format!("{s:?}").contains(TOKEN), "Debug hides the token");
    }

    #[test]
    fn short_token_and_two_token_sources_are_refused() {
        let e = AdminSettings::try_from(args(Some("short"), None, "")).unwrap_err();
        assert!(e.to_string().contains("too short (5 bytes)"), "{e}");
        let e = AdminSettings::try_from(args(Some(TOKEN), Some("/x"), "")).unwrap_err();
        assert!(matches!(e, AdminConfigError::BothTokens));
    }

    #[test]
    fn token_file_is_read_and_trimmed_and_a_missing_one_is_named() {
        let path = std::env::temp_dir().join(format!("realtime-admin-token-{}", std::process::id()));
        std::fs::write(&path, format!("  {TOKEN}\n")).unwrap();
        let s = AdminSettings::try_from(args(None, Some(path.to_str().unwrap()), "")).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(s.token(), Some(TOKEN));
        let e = AdminSettings::try_from(args(None, Some("/nonexistent/token"), "")).unwrap_err();
        assert!(e.to_string().starts_with("--admin-token-file /nonexistent/token:"), "{e}");
    }

    #[test]
    fn origins_are_normalised_and_bad_ones_refused() {
        let s = AdminSettings::try_from(args(Some(TOKEN), None, "https://Admin.Example.com/, http://h:8080"))
            .unwrap();
        assert_eq!(s.origins, ["https://admin.example.com", "http://h:8080"]);
        for bad in ["admin.example.com", "https://", "https://a/b", "ftp://a"] {
            let e = AdminSettings::try_from(args(Some(TOKEN), None, bad)).unwrap_err();
            assert!(matches!(e, AdminConfigError::BadOrigin(_)), "{bad}: {e}");
        }
    }
}
