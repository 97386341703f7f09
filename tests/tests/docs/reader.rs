//! The reader: walks pages block by block as a person at a terminal would, on the stack `make
//! run` started, and fails at the first block whose outcome differs from the page.
//!
//! - `sh` blocks run in one bash "terminal": exported variables and the current directory carry
//!   over from block to block (each page starts in the checkout). A block must succeed.
//! - `sql` blocks are pasted into `psql "$DB"` (as the owner). They must succeed without a
//!   WARNING, unless an `output` block after them shows what psql printed.
//! - WebSocket transcripts (`wscat -c URL` then `>` / `<` lines) are played with a real
//!   WebSocket client on the URL the shell expands (wscat itself is interactive; the frames are
//!   what matters): every `>` frame is sent as written, every `<` frame must be the next frame
//!   to arrive.
//! - `file=` blocks are saved where the shell is; TypeScript ones are also type-checked with
//!   `tsc --strict` against the client's declarations; `browser=` opens one in headless Chromium.
//! - allow/deny tables are performed row by row over WebSocket with the reader's tokens.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use realtime_e2e::{http_get, Connect, Ws};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::compare::{line_matches, output_matches};
use super::markdown::{Block, Frame, Item, Row, Table};
use super::stack::Stack;

/// How long one shell block may take (npm installs included).
const BLOCK_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the reader waits for a line from a background program.
const OUTPUT_TIMEOUT: Duration = Duration::from_secs(20);

/// A program left running in the background (`node hello.mjs`, a browser page).
struct Background {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    seen: usize,
}

pub struct Reader<'a> {
    stack: &'a Stack,
    state: PathBuf,
    subs: Vec<(String, String)>,
    sessions: HashMap<String, Ws>,
    background: HashMap<String, Background>,
    last_output: Option<String>,
    page: String,
    /// Blocks run and blocks marked `not run`, over every page.
    pub ran: usize,
    pub skipped: usize,
}

impl<'a> Reader<'a> {
    pub fn new(stack: &'a Stack) -> Reader<'a> {
        let state = stack.data.parent().expect("base").join("shell");
        std::fs::create_dir_all(&state).expect("shell state folder");
        let real_home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let env = [
            ("HOME", stack.home.display().to_string()),
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("LANG", "C.UTF-8".into()),
            ("TERM", "dumb".into()),
            // the reader's own npm cache, so a repeated run installs without the network
            ("npm_config_cache", format!("{real_home}/.npm")),
            ("npm_config_update_notifier", "false".into()),
        ];
        let exports: String = env.iter().map(|(k, v)| format!("export {k}={}\n", quote(v))).collect();
        std::fs::write(state.join("env.sh"), exports).expect("write env.sh");
        Reader {
            subs: stack.substitutions(),
            stack,
            state,
            sessions: HashMap::new(),
            background: HashMap::new(),
            last_output: None,
            page: String::new(),
            ran: 0,
            skipped: 0,
        }
    }

    /// Reads one page, every item in order. Sessions and background programs end with the page.
    pub async fn read_page(&mut self, page: &str, items: &[Item]) {
        self.page = page.to_string();
        std::fs::write(self.state.join("cwd"), self.stack.root.display().to_string()).expect("cwd");
        for (i, item) in items.iter().enumerate() {
            let next_is_output =
                matches!(items.get(i + 1), Some(Item::Block(b)) if b.directive("output") == Some(""));
            match item {
                Item::Block(b) => self.block(b, next_is_output).await,
                Item::Table(t) => self.table(t).await,
            }
        }
        self.sessions.clear();
        for (_, mut bg) in self.background.drain() {
            let _ = bg.child.kill().await;
        }
        match http_get(self.stack.relay_port, "/readyz").await {
            Ok((200, _)) => {}
            other => {
                panic!("after {page}, the relay is not ready any more: {other:?}\n{}", self.stack.log_tail())
            }
        }
    }

    fn fail(&self, b: &Block, what: &str) -> ! {
        panic!("{}:{}: {what}\n--- the block ---\n{}\n", self.page, b.line, b.body)
    }

    fn substitute(&self, text: &str) -> String {
        substitute(text, &self.subs)
    }

    async fn block(&mut self, b: &Block, next_is_output: bool) {
        if let Some(name) = b.directive("output") {
            self.ran += 1;
            return self.check_output(b, name).await;
        }
        if let Some(t) = b.transcript() {
            if b.not_run() {
                self.skipped += 1;
                return;
            }
            self.ran += 1;
            return self.transcript(b, t.connect.as_deref(), &t.frames).await;
        }
        if !b.is_code() {
            return; // data: a frame's shape, a file layout, a log line
        }
        if b.not_run() {
            self.skipped += 1;
            return;
        }
        self.ran += 1;
        let body = self.substitute(&b.body);
        if let Some(file) = b.directive("file") {
            let path = match file.strip_prefix("~/") {
                Some(rel) => self.stack.home.join(rel),
                None => self.cwd().join(file),
            };
            std::fs::write(&path, format!("{body}\n"))
                .unwrap_or_else(|e| self.fail(b, &format!("save {file}: {e}")));
            if file.ends_with(".ts") || file.ends_with(".mts") {
                self.typecheck(b, &path).await;
            }
            if let Some(name) = b.directive("browser") {
                let script = self.stack.root.join("tests/reader/browser.mjs");
                let url = format!("file://{}", path.display());
                let cmd = format!("node {} {}", quote(&script.display().to_string()), quote(&url));
                self.start_background(name, &cmd);
            }
            return;
        }
        match b.lang.as_str() {
            "sh" | "bash" => {
                let commands: Vec<&str> =
                    body.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| !l.is_empty()).collect();
                if commands == ["make run"] {
                    // The test started it, exactly as this block does (see stack.rs).
                    self.last_output = None;
                    return;
                }
                if let Some(name) = b.directive("background") {
                    return self.start_background(name, &body);
                }
                let (ok, out) = self.shell(&body).await;
                if !ok {
                    self.fail(b, &format!("the commands failed:\n{out}"));
                }
                self.last_output = Some(out);
            }
            "sql" => {
                let file = self.state.join("block.sql");
                std::fs::write(&file, &body).expect("write block.sql");
                let cmd = format!("psql \"$DB\" -X -q -v ON_ERROR_STOP=1 < {}", quote(&file.display().to_string()));
                let (ok, out) = self.shell(&cmd).await;
                let out: String = out.lines().map(|l| format!("{}\n", strip_psql_prefix(l))).collect();
                if !next_is_output && (!ok || out.contains("WARNING:") || out.contains("ERROR:")) {
                    self.fail(b, &format!("psql said:\n{out}"));
                }
                self.last_output = Some(out);
            }
            other => self.fail(
                b,
                &format!("a {other} block must say how the reader runs it (<!-- docs: file=... -->) or start with a `not run` comment"),
            ),
        }
    }

    fn cwd(&self) -> PathBuf {
        PathBuf::from(std::fs::read_to_string(self.state.join("cwd")).expect("cwd").trim())
    }

    /// The script that runs `body` in the reader's terminal (state in, state out).
    fn script(&self, body: &str, keep_state: bool) -> String {
        let s = quote(&self.state.display().to_string());
        let save =
            if keep_state { format!("export -p > {s}/env.sh\npwd > {s}/cwd\n") } else { String::new() };
        format!("set -eo pipefail\n. {s}/env.sh\ncd \"$(cat {s}/cwd)\"\nexec 2>&1\n{body}\n{save}")
    }

    fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(script)
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.kill_on_drop(true);
        cmd
    }

    /// Runs `body` as a block of the reader's terminal: (succeeded, stdout and stderr).
    async fn shell(&self, body: &str) -> (bool, String) {
        let child = self.command(&self.script(body, true)).spawn().expect("start bash");
        match tokio::time::timeout(BLOCK_TIMEOUT, child.wait_with_output()).await {
            Ok(Ok(out)) => {
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                (out.status.success(), text)
            }
            Ok(Err(e)) => (false, format!("bash: {e}")),
            Err(_) => (false, format!("still running after {BLOCK_TIMEOUT:?}")),
        }
    }

    /// The value of a shell expression (`"$REALTIME_URL?token=$ALICE_JWT"`) in the reader's terminal.
    async fn expand(&self, b: &Block, expr: &str) -> String {
        let child =
            self.command(&self.script(&format!("printf '%s' {expr}"), false)).spawn().expect("start bash");
        let out = child.wait_with_output().await.expect("bash");
        if !out.status.success() {
            self.fail(b, &format!("cannot expand {expr}: {}", String::from_utf8_lossy(&out.stdout)));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn start_background(&mut self, name: &str, body: &str) {
        let mut child = self.command(&self.script(body, false)).spawn().expect("start bash");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        self.background.insert(name.to_string(), Background { child, lines, seen: 0 });
    }

    async fn check_output(&mut self, b: &Block, name: &str) {
        let expected = self.substitute(&b.body);
        if name.is_empty() {
            let Some(actual) = self.last_output.take() else {
                self.fail(b, "an output block, but the block before it printed nothing the page could show")
            };
            if !output_matches(&expected, &actual) {
                self.fail(b, &format!("the page shows this output, but the reader got:\n{actual}"));
            }
        } else if self.sessions.contains_key(name) {
            for line in expected.lines().filter(|l| !l.trim().is_empty()) {
                self.receive(b, name, line).await;
            }
        } else if self.background.contains_key(name) {
            self.background_lines(b, name, &expected).await;
        } else {
            self.fail(b, &format!("output={name}, but no session or background program is called {name}"));
        }
    }

    async fn background_lines(&mut self, b: &Block, name: &str, expected: &str) {
        let want: Vec<&str> = expected.lines().filter(|l| !l.trim().is_empty()).collect();
        let deadline = tokio::time::Instant::now() + OUTPUT_TIMEOUT;
        let bg = self.background.get_mut(name).expect("background");
        loop {
            let got: Vec<String> = bg.lines.lock().unwrap()[bg.seen..].to_vec();
            let agrees = got.iter().zip(&want).all(|(g, w)| line_matches(w, g));
            if got.len() >= want.len() || !agrees || tokio::time::Instant::now() > deadline {
                if got.len() < want.len() || !agrees {
                    let all = bg.lines.lock().unwrap().join("\n");
                    self.fail(b, &format!("{name} printed (everything so far):\n{all}"));
                }
                bg.seen += want.len();
                return;
            }
            if let Ok(Some(status)) = bg.child.try_wait() {
                tokio::time::sleep(Duration::from_millis(200)).await; // let the last lines land
                if bg.lines.lock().unwrap().len() < bg.seen + want.len() {
                    let all = bg.lines.lock().unwrap().join("\n");
                    self.fail(b, &format!("{name} exited ({status}) after printing:\n{all}"));
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn receive(&mut self, b: &Block, session: &str, expected: &str) {
        let ws = self.sessions.get_mut(session).expect("session");
        let frame = ws.recv_json().await;
        if !line_matches(expected, &frame.to_string()) {
            let ws = self.sessions.get(session).expect("session");
            self.fail(
                b,
                &format!("session {session} received\n{frame}\ninstead of\n{expected}\n{}", ws.transcript()),
            );
        }
    }

    async fn transcript(&mut self, b: &Block, connect: Option<&str>, frames: &[Frame]) {
        let name = b.directive("session").unwrap_or("wscat").to_string();
        if let Some(expr) = connect {
            let url = self.expand(b, &self.substitute(expr)).await;
            let ws = match Ws::try_connect(&url, Connect::Anonymous).await {
                Ok(ws) => ws,
                Err(e) => self.fail(b, &format!("connecting to {url} failed: {e}")),
            };
            self.sessions.insert(name.clone(), ws);
        } else if !self.sessions.contains_key(&name) {
            self.fail(b, &format!("frames for session {name}, which no block opened"));
        }
        for frame in frames {
            match frame {
                Frame::Send(text) => {
                    let text = self.substitute(text);
                    self.sessions.get_mut(&name).expect("session").send_text(&text).await
                }
                Frame::Receive(text) => {
                    let text = self.substitute(text);
                    self.receive(b, &name, &text).await
                }
            }
        }
    }

    /// Performs every row of an allow/deny table.
    async fn table(&mut self, t: &Table) {
        let mut failures = Vec::new();
        for row in &t.rows {
            let got = self.perform(row).await;
            if outcome(&got) != row.result {
                failures.push(format!(
                    "{} {} {} ({}): the page says {}, got {got}",
                    row.who, row.does, row.channel, row.event, row.result
                ));
            }
        }
        self.ran += 1;
        assert!(
            failures.is_empty(),
            "{}:{}: the table promises what the system does not do:\n{}",
            self.page,
            t.line,
            failures.join("\n")
        );
    }

    async fn perform(&mut self, row: &Row) -> Value {
        let variable = match row.who.as_str() {
            "anonymous" => None,
            "alice" | "bob" | "carol" => Some(format!("{}_JWT", row.who.to_uppercase())),
            "service" => Some("SERVICE_JWT".to_string()),
            other => panic!("{}: unknown actor {other:?} (anonymous, alice, bob, carol, service)", self.page),
        };
        let auth = match variable {
            None => Connect::Anonymous,
            Some(var) => {
                let (_, token) = self.shell(&format!("printf '%s' \"${var}\"")).await;
                assert!(
                    !token.is_empty(),
                    "{}: ${var} is not set: the page never gave the reader {}'s token",
                    self.page,
                    row.who
                );
                Connect::Bearer(token)
            }
        };
        let mut ws = Ws::connect(&format!("ws://127.0.0.1:{}/v1/socket", self.stack.relay_port), auth).await;
        match row.does.as_str() {
            "subscribe" => ws.subscribe(&row.channel).await,
            "publish" | "publish-ephemeral" => {
                let persist = row.does == "publish";
                ws.request(json!({"type": "publish", "channel": row.channel, "event": row.event,
                                  "payload": {"from": row.who}, "persist": persist}))
                    .await
            }
            other => {
                panic!("{}: unknown action {other:?} (subscribe, publish, publish-ephemeral)", self.page)
            }
        }
    }

    /// `tsc --strict --noEmit` of a saved TypeScript snippet against the client's declarations.
    async fn typecheck(&self, b: &Block, file: &Path) {
        let sdk = self.stack.root.join("clients/typescript");
        let config = self.state.join("tsconfig.json");
        let d = |p: &str| sdk.join(p).display().to_string();
        let tsconfig = json!({
            "compilerOptions": {
                "target": "es2022", "module": "nodenext", "moduleResolution": "nodenext", "strict": true,
                "noEmit": true, "skipLibCheck": true, "types": ["node"], "typeRoots": [d("node_modules/@types")],
                "paths": {
                    "@realtime/client": [d("dist/index.d.ts")],
                    "@realtime/client/node": [d("dist/node.d.ts")],
                    "@realtime/client/react": [d("dist/react/index.d.ts")],
                },
            },
            "files": [file.display().to_string()],
        });
        std::fs::write(&config, tsconfig.to_string()).expect("write tsconfig.json");
        let tsc = sdk.join("node_modules/.bin/tsc");
        let cmd =
            format!("{} -p {}", quote(&tsc.display().to_string()), quote(&config.display().to_string()));
        let (ok, out) = self.shell(&cmd).await;
        if !ok {
            self.fail(b, &format!("the snippet does not type-check:\n{out}"));
        }
    }
}

/// `ok` or the error code of a reply.
fn outcome(reply: &Value) -> String {
    if reply["ok"] == true {
        "ok".into()
    } else {
        reply["error"]["code"].as_str().unwrap_or("<no code>").to_string()
    }
}

/// psql prefixes messages read from a file with `psql:<file>:<line>: `; a reader typing into psql
/// sees them without.
fn strip_psql_prefix(line: &str) -> &str {
    match line.strip_prefix("psql:") {
        Some(rest) => rest.splitn(3, ':').nth(2).map(str::trim_start).unwrap_or(line),
        None => line,
    }
}

/// Single-quoted for bash.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Replaces every `from` of `subs` in one pass (a replacement is never replaced again).
pub fn substitute(text: &str, subs: &[(String, String)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while !rest.is_empty() {
        for (from, to) in subs {
            if let Some(after) = rest.strip_prefix(from.as_str()) {
                out.push_str(to);
                rest = after;
                continue 'outer;
            }
        }
        let c = rest.chars().next().expect("not empty");
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutions_happen_once_and_psql_prefixes_go() {
        let subs = vec![
            ("127.0.0.1:4000".to_string(), "127.0.0.1:40012".to_string()),
            ("127.0.0.1:4001".to_string(), "X".to_string()),
        ];
        assert_eq!(substitute("a 127.0.0.1:4000 b 127.0.0.1:4001", &subs), "a 127.0.0.1:40012 b X");
        assert_eq!(strip_psql_prefix("psql:/tmp/b.sql:1: ERROR:  boom"), "ERROR:  boom");
        assert_eq!(strip_psql_prefix("plain"), "plain");
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
