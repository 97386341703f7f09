//! Table change events: channel templates and the arguments of `realtime.broadcast_changes()`.
//!
//! Pure Rust, no Postgres; `api::changes` (the trigger) and `sql/changes.sql` (`watch_table`)
//! call into here, so there is one implementation of the rules:
//!
//! - a channel *template* is text with `{column}` placeholders (`orders`, `order:{id}`,
//!   `team:{team_id}:orders`); `{{` and `}}` stand for literal braces; a placeholder names a
//!   column exactly as it is spelled in the table (case-sensitive, no quoting);
//! - the trigger arguments are `(template [, event [, persist [, excluded column ...]]])`: an
//!   empty `event` means "the operation name", an empty `persist` means `true`.

use thiserror::Error;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text copied as is.
    Literal(String),
    /// `{name}`: replaced by the row's value of column `name`.
    Column(String),
}

/// A parsed channel template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    segments: Vec<Segment>,
}

/// Why a template or the trigger arguments were rejected. `Display` is the Postgres message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChangeArgsError {
    #[error(
        "realtime.broadcast_changes needs a channel template as its first argument, e.g. \
         realtime.broadcast_changes('order:{{id}}')"
    )]
    MissingTemplate,

    #[error("realtime: channel template must not be empty")]
    EmptyTemplate,

    #[error("realtime: channel template '{template}' has an unclosed '{{' at byte {at}")]
    Unclosed { template: String, at: usize },

    #[error("realtime: channel template '{template}' has an empty placeholder '{{}}' at byte {at}")]
    EmptyPlaceholder { template: String, at: usize },

    #[error(
        "realtime: channel template '{template}' has a '{ch}' inside a placeholder at byte {at}; \
         write {{column}}, and {{{{ or }}}} for a literal brace"
    )]
    BraceInPlaceholder { template: String, at: usize, ch: char },

    #[error(
        "realtime: channel template '{template}' has a lone '}}' at byte {at}; write }}}} for a literal brace"
    )]
    StrayClose { template: String, at: usize },

    #[error(
        "realtime: broadcast_changes persist argument must be true or false (or empty for true), got '{0}'"
    )]
    BadPersist(String),

    #[error("realtime: broadcast_changes excluded column name must not be empty")]
    EmptyExclude,
}

impl Template {
    /// Parses `source`. `{{` / `}}` are literal braces; `{name}` is a placeholder.
    pub fn parse(source: &str) -> Result<Template, ChangeArgsError> {
        if source.is_empty() {
            return Err(ChangeArgsError::EmptyTemplate);
        }
        let err_template = || source.to_owned();
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut chars = source.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, n)| *n) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, n)| *n) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => return Err(ChangeArgsError::StrayClose { template: err_template(), at }),
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            None => return Err(ChangeArgsError::Unclosed { template: err_template(), at }),
                            Some((_, '}')) => break,
                            Some((inner, '{')) => {
                                return Err(ChangeArgsError::BraceInPlaceholder {
                                    template: err_template(),
                                    at: inner,
                                    ch: '{',
                                })
                            }
                            Some((_, ch)) => name.push(ch),
                        }
                    }
                    if name.is_empty() {
                        return Err(ChangeArgsError::EmptyPlaceholder { template: err_template(), at });
                    }
                    if !literal.is_empty() {
                        segments.push(Segment::Literal(std::mem::take(&mut literal)));
                    }
                    segments.push(Segment::Column(name));
                }
                _ => literal.push(c),
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(Template { source: source.to_owned(), segments })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The parsed pieces, in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The column names of the placeholders, in order of appearance (repeats included).
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Column(c) => Some(c.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// True when the template has at least one `{column}`.
    pub fn has_placeholders(&self) -> bool {
        self.columns().next().is_some()
    }

    /// Renders the channel name; `value(i, column)` gives the text of the `i`-th placeholder.
    pub fn render<E>(&self, mut value: impl FnMut(usize, &str) -> Result<String, E>) -> Result<String, E> {
        let mut out = String::with_capacity(self.source.len() + 16);
        let mut i = 0;
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Column(column) => {
                    out.push_str(&value(i, column)?);
                    i += 1;
                }
            }
        }
        Ok(out)
    }

    /// The channel with every placeholder replaced by `x`: what `watch_table` validates as a
    /// channel name, so a template that can never produce a valid channel is refused early.
    pub fn sample_channel(&self) -> String {
        let rendered: Result<String, std::convert::Infallible> = self.render(|_, _| Ok("x".to_owned()));
        match rendered {
            Ok(s) => s,
            Err(never) => match never {},
        }
    }
}

/// The parsed arguments of one `broadcast_changes` trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeArgs {
    pub template: Template,
    /// Event name override; `None`: the operation (`INSERT`, `UPDATE`, ...).
    pub event: Option<String>,
    /// `false`: ephemeral (`realtime.broadcast` path), nothing stored.
    pub persist: bool,
    /// Columns left out of `record` and `old_record`.
    pub exclude: Vec<String>,
}

impl ChangeArgs {
    /// Parses `TG_ARGV`: `(template [, event [, persist [, excluded column ...]]])`.
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<ChangeArgs, ChangeArgsError> {
        let template = args.first().ok_or(ChangeArgsError::MissingTemplate)?;
        let template = Template::parse(template.as_ref())?;
        let event = args.get(1).map(|s| s.as_ref()).filter(|s| !s.is_empty()).map(str::to_owned);
        let persist = match args.get(2) {
            None => true,
            Some(s) => {
                parse_bool(s.as_ref()).ok_or_else(|| ChangeArgsError::BadPersist(s.as_ref().into()))?
            }
        };
        let exclude: Vec<String> = args.iter().skip(3).map(|s| s.as_ref().to_owned()).collect();
        if exclude.iter().any(String::is_empty) {
            return Err(ChangeArgsError::EmptyExclude);
        }
        Ok(ChangeArgs { template, event, persist, exclude })
    }
}

/// Postgres' spellings of a boolean (case-insensitive); the empty string is `true` (the default).
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "t" | "true" | "on" | "yes" | "y" | "1" => Some(true),
        "f" | "false" | "off" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// The row operation a change event reports; also its default event name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Insert,
    Update,
    Delete,
    Truncate,
}

impl Operation {
    /// `INSERT`, `UPDATE`, `DELETE` or `TRUNCATE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Insert => "INSERT",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Truncate => "TRUNCATE",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(t: &str) -> Vec<String> {
        Template::parse(t).unwrap().columns().map(str::to_owned).collect()
    }

    #[test]
    fn plain_template_has_no_placeholders() {
        let t = Template::parse("orders").unwrap();
        assert!(!t.has_placeholders());
        assert_eq!(t.segments(), [Segment::Literal("orders".into())]);
    }

    #[test]
    fn placeholders_are_found_in_order() {
        assert_eq!(cols("order:{id}"), ["id"]);
        assert_eq!(cols("team:{team_id}:orders:{id}"), ["team_id", "id"]);
        assert_eq!(cols("{a}{b}"), ["a", "b"]);
        assert_eq!(cols("{Mixed Case}"), ["Mixed Case"]);
    }

    #[test]
    fn render_substitutes_each_placeholder() {
        let t = Template::parse("team:{team_id}:order:{id}").unwrap();
        let out: Result<String, ()> = t.render(|i, c| Ok(format!("{c}={i}")));
        assert_eq!(out.unwrap(), "team:team_id=0:order:id=1");
    }

    #[test]
    fn render_stops_at_the_first_error() {
        let t = Template::parse("{a}:{b}").unwrap();
        let out = t.render(|_, c| if c == "b" { Err(c.to_owned()) } else { Ok("1".into()) });
        assert_eq!(out, Err("b".to_owned()));
    }

    #[test]
    fn doubled_braces_are_literal_braces() {
        let t = Template::parse("x{{y}}:{id}").unwrap();
        assert_eq!(t.sample_channel(), "x{y}:x");
        assert_eq!(cols("x{{y}}:{id}"), ["id"]);
    }

    #[test]
    fn malformed_templates_are_rejected_with_the_position() {
        assert_eq!(Template::parse(""), Err(ChangeArgsError::EmptyTemplate));
        assert_eq!(
            Template::parse("order:{id").unwrap_err().to_string(),
            "realtime: channel template 'order:{id' has an unclosed '{' at byte 6"
        );
        assert_eq!(
            Template::parse("order:{}").unwrap_err().to_string(),
            "realtime: channel template 'order:{}' has an empty placeholder '{}' at byte 6"
        );
        assert_eq!(
            Template::parse("a}b").unwrap_err().to_string(),
            "realtime: channel template 'a}b' has a lone '}' at byte 1; write }} for a literal brace"
        );
        assert!(matches!(
            Template::parse("{a{b}"),
            Err(ChangeArgsError::BraceInPlaceholder { at: 2, ch: '{', .. })
        ));
    }

    #[test]
    fn args_default_to_operation_event_persisted_nothing_excluded() {
        let a = ChangeArgs::parse(&["orders"]).unwrap();
        assert_eq!(a.event, None);
        assert!(a.persist);
        assert!(a.exclude.is_empty());
        let a = ChangeArgs::parse(&["orders", "", ""]).unwrap();
        assert_eq!((a.event, a.persist), (None, true));
    }

    #[test]
    fn args_take_event_persist_and_excluded_columns() {
        let a = ChangeArgs::parse(&["order:{id}", "changed", "false", "secret", "token"]).unwrap();
        assert_eq!(a.event.as_deref(), Some("changed"));
        assert!(!a.persist);
        assert_eq!(a.exclude, ["secret", "token"]);
    }

    #[test]
    fn bad_args_are_rejected() {
        assert_eq!(ChangeArgs::parse::<&str>(&[]), Err(ChangeArgsError::MissingTemplate));
        assert_eq!(
            ChangeArgs::parse(&["t", "", "maybe"]).unwrap_err().to_string(),
            "realtime: broadcast_changes persist argument must be true or false (or empty for true), got 'maybe'"
        );
        assert_eq!(ChangeArgs::parse(&["t", "", "", ""]), Err(ChangeArgsError::EmptyExclude));
    }

    #[test]
    fn booleans_accept_postgres_spellings() {
        for s in ["", "true", "ON", "yes", "1", "t"] {
            assert_eq!(parse_bool(s), Some(true), "{s}");
        }
        for s in ["false", "off", "No", "0", "f"] {
            assert_eq!(parse_bool(s), Some(false), "{s}");
        }
        assert_eq!(parse_bool("nope"), None);
    }
}
