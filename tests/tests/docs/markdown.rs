//! What the reader-path test reads in a page: fenced code blocks (with the invisible
//! `<!-- docs: ... -->` directives on the line before them) and allow/deny tables, in page order.
//!
//! Directives (an HTML comment right above a fence; several keys may share one comment):
//!
//! | directive | on | meaning |
//! |---|---|---|
//! | `output` | a `text`/`json` block | what the previous command printed |
//! | `output=NAME` | a `text`/`json` block | what arrives next from the background program or WebSocket session NAME |
//! | `session=NAME` | a WebSocket transcript | the session it opens or continues (default `wscat`) |
//! | `background=NAME` | a `sh` block | runs in the background; its output is checked with `output=NAME` |
//! | `file=PATH` | a code block | the reader saves it as PATH (relative to the shell's directory) |
//! | `browser=NAME` | an `html` block with `file=` | the reader opens that file in a browser (headless Chromium), whose console is NAME |
//!
//! A block the reader is not meant to run says so visibly: its first line is a comment that
//! starts with `not run` (`-- not run: ...`, `# not run: ...`, `// not run: ...`).

use std::collections::BTreeMap;

/// One thing on a page, in page order.
#[derive(Debug, Clone)]
pub enum Item {
    Block(Block),
    /// A markdown table whose header names `who`, `does`, `channel` and `result`.
    Table(Table),
}

#[derive(Debug, Clone)]
pub struct Block {
    /// 1-based line of the opening fence.
    pub line: usize,
    /// The fence's info string (`sh`, `sql`, `json`, ...; empty when none).
    pub lang: String,
    pub body: String,
    pub directives: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
pub struct Table {
    pub line: usize,
    pub rows: Vec<Row>,
}

/// One promise of an allow/deny table.
#[derive(Debug, Clone)]
pub struct Row {
    pub who: String,
    pub does: String,
    pub channel: String,
    pub event: String,
    pub result: String,
}

/// Languages whose blocks are programs the reader runs (or must be marked `not run`).
pub const CODE: &[&str] = &["sh", "bash", "sql", "js", "mjs", "ts", "tsx", "html", "python", "py"];

impl Block {
    pub fn directive(&self, key: &str) -> Option<&str> {
        self.directives.get(key).map(String::as_str)
    }

    /// The block is visibly marked as not meant to run.
    pub fn not_run(&self) -> bool {
        let first = self.body.lines().next().unwrap_or_default().trim_start();
        ["--", "#", "//"].iter().any(|c| {
            first
                .strip_prefix(c)
                .is_some_and(|rest| rest.trim_start().to_ascii_lowercase().starts_with("not run"))
        })
    }

    pub fn is_code(&self) -> bool {
        CODE.contains(&self.lang.as_str())
    }

    /// Every non-blank line is a `> ` (sent) or `< ` (received) WebSocket frame, after an
    /// optional first line that opens the connection (`wscat -c URL`).
    pub fn transcript(&self) -> Option<Transcript> {
        let mut lines = self.body.lines().filter(|l| !l.trim().is_empty()).peekable();
        let connect = match lines.peek() {
            Some(first) if first.contains("wscat ") && first.contains(" -c ") => {
                let url = first.split(" -c ").nth(1)?.trim().to_string();
                lines.next();
                Some(url)
            }
            _ => None,
        };
        let mut frames = Vec::new();
        for line in lines {
            if let Some(sent) = line.strip_prefix("> ") {
                frames.push(Frame::Send(sent.to_string()));
            } else if let Some(got) = line.strip_prefix("< ") {
                frames.push(Frame::Receive(got.to_string()));
            } else {
                return None;
            }
        }
        (!frames.is_empty()).then_some(Transcript { connect, frames })
    }
}

/// A WebSocket exchange as a page shows it.
#[derive(Debug, Clone)]
pub struct Transcript {
    /// The URL argument of `wscat -c`, as written (shell quoting and variables included).
    pub connect: Option<String>,
    pub frames: Vec<Frame>,
}

#[derive(Debug, Clone)]
pub enum Frame {
    Send(String),
    Receive(String),
}

/// `key=value key2` pairs of every `<!-- docs: ... -->` comment in `lines`.
fn directives(lines: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in lines {
        let Some(inner) = line.trim().strip_prefix("<!-- docs:").and_then(|l| l.strip_suffix("-->")) else {
            continue;
        };
        for word in inner.split_whitespace() {
            let (k, v) = word.split_once('=').unwrap_or((word, ""));
            out.insert(k.to_string(), v.to_string());
        }
    }
    out
}

/// The items of a page, in order.
pub fn parse(page: &str, text: &str) -> Vec<Item> {
    let lines: Vec<&str> = text.lines().collect();
    let mut items = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(info) = line.strip_prefix("```") {
            let start = i;
            let mut body = Vec::new();
            i += 1;
            while i < lines.len() && !lines[i].starts_with("```") {
                body.push(lines[i]);
                i += 1;
            }
            assert!(i < lines.len(), "{page}:{}: unterminated code block", start + 1);
            // directives: the comment lines directly above the fence
            let mut above = start;
            while above > 0 && lines[above - 1].trim_start().starts_with("<!-- docs:") {
                above -= 1;
            }
            items.push(Item::Block(Block {
                line: start + 1,
                lang: info.trim().to_string(),
                body: body.join("\n"),
                directives: directives(&lines[above..start]),
            }));
        } else if line.starts_with('|') && i + 1 < lines.len() && lines[i + 1].starts_with("|---") {
            let start = i;
            let mut rows = Vec::new();
            while i < lines.len() && lines[i].starts_with('|') {
                rows.push(lines[i]);
                i += 1;
            }
            if let Some(table) = allow_deny_table(page, start + 1, &rows) {
                items.push(Item::Table(table));
            }
            continue;
        }
        i += 1;
    }
    items
}

/// An allow/deny table (columns `who`, `does`, `channel`, optional `event`, `result`), else None.
fn allow_deny_table(page: &str, line: usize, rows: &[&str]) -> Option<Table> {
    let cells = |l: &str| -> Vec<String> {
        l.trim().trim_matches('|').split('|').map(|c| c.trim().to_string()).collect()
    };
    let header = cells(rows[0]);
    let col = |h: &str| header.iter().position(|c| c == h);
    let (who, does, channel, result) = (col("who")?, col("does")?, col("channel")?, col("result")?);
    let event = col("event");
    let rows = rows[2..]
        .iter()
        .map(|l| {
            let c = cells(l);
            assert_eq!(c.len(), header.len(), "{page}:{line}: a row with {} cells: {l}", c.len());
            Row {
                who: c[who].clone(),
                does: c[does].clone(),
                channel: c[channel].clone(),
                event: event
                    .map(|e| c[e].clone())
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| "message".into()),
                result: c[result].clone(),
            }
        })
        .collect::<Vec<_>>();
    assert!(!rows.is_empty(), "{page}:{line}: an allow/deny table without rows");
    Some(Table { line, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "intro\n\n<!-- docs: output=wscat -->\n```json\n{\"a\":1}\n```\n\n```sql\n-- not run: x\nSELECT 1;\n```\n\n| who | does | channel | result |\n|---|---|---|---|\n| alice | subscribe | a:1 | ok |\n\n```sh\nnpx --yes wscat -c \"$URL\"\n> {\"type\":\"ping\"}\n< {\"type\":\"pong\"}\n```\n";

    #[test]
    fn blocks_directives_tables_and_transcripts_are_read_in_page_order() {
        let items = parse("t.md", PAGE);
        let Item::Block(b) = &items[0] else { panic!("{items:?}") };
        assert_eq!((b.line, b.lang.as_str(), b.directive("output")), (4, "json", Some("wscat")));
        let Item::Block(b) = &items[1] else { panic!() };
        assert!(b.not_run() && b.is_code());
        let Item::Table(t) = &items[2] else { panic!() };
        assert_eq!((t.rows[0].who.as_str(), t.rows[0].event.as_str()), ("alice", "message"));
        let Item::Block(b) = &items[3] else { panic!() };
        let t = b.transcript().expect("a transcript");
        assert_eq!(t.connect.as_deref(), Some("\"$URL\""));
        assert_eq!(t.frames.len(), 2);
    }
}
