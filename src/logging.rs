//! Operator logs: one line per message, per refused session and per TLS failure, never per
//! byte. Text (`key=value`, Postfix-like) or JSON (one object per line), to stderr or appended
//! to a file that SIGHUP reopens (logrotate). The keys and their order are the contract the
//! README's "Operations" section lists.
//!
//! A [`Logger`] is shared by every worker; each worker writes through its own [`LogWriter`],
//! which formats a line into its own buffer and hands it to the OS in one `write` (an
//! `O_APPEND` file keeps lines from different workers whole). No lock on the way: a reopen is a
//! generation number the writers notice on their next line.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// How lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `time=... level=info event=msg key=value ...`; values with spaces, quotes, `=`,
    /// backslashes or control characters are double-quoted with C-style escapes.
    #[default]
    Text,
    /// One JSON object per line, same keys in the same order.
    Json,
}

/// How much is logged: each level includes the ones above it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Nothing at all.
    Off,
    /// Failures of the relay itself (accept errors).
    Error,
    /// Problems with peers: TLS failures.
    Warn,
    /// One line per message and per refused session (the default).
    #[default]
    Info,
    /// Everything above (reserved for diagnostics).
    Debug,
}

impl Level {
    /// The `level` value in lines.
    pub fn label(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    fn from_u8(v: u8) -> Level {
        match v {
            0 => Level::Off,
            1 => Level::Error,
            2 => Level::Warn,
            3 => Level::Info,
            _ => Level::Debug,
        }
    }
}

/// The process-wide log settings.
#[derive(Debug)]
pub struct Logger {
    format: AtomicU8,
    level: AtomicU8,
    /// `None`: stderr.
    path: Mutex<Option<PathBuf>>,
    generation: AtomicU64,
}

impl Logger {
    /// A logger writing `format` lines at `level` and above to `path` (appended; created when
    /// missing) or stderr. The file is opened once here so a bad path fails at start.
    pub fn new(format: LogFormat, level: Level, path: Option<PathBuf>) -> io::Result<Arc<Logger>> {
        if let Some(p) = &path {
            open_append(p)?;
        }
        Ok(Arc::new(Logger {
            format: AtomicU8::new(format as u8),
            level: AtomicU8::new(level as u8),
            path: Mutex::new(path),
            generation: AtomicU64::new(0),
        }))
    }

    /// Text lines at `info` to stderr.
    pub fn stderr() -> Arc<Logger> {
        Arc::new(Logger {
            format: AtomicU8::new(LogFormat::Text as u8),
            level: AtomicU8::new(Level::Info as u8),
            path: Mutex::new(None),
            generation: AtomicU64::new(0),
        })
    }

    /// A logger that writes nothing.
    pub fn off() -> Arc<Logger> {
        let l = Logger::stderr();
        l.level.store(Level::Off as u8, Relaxed);
        l
    }

    /// New settings (a reload): format and level apply to the next line; a changed path (or
    /// the same one, after logrotate moved the file) is opened by each writer on its next
    /// line. An unusable path is an error and nothing changes.
    pub fn reconfigure(
        &self,
        format: LogFormat,
        level: Level,
        path: Option<PathBuf>,
    ) -> io::Result<()> {
        if let Some(p) = &path {
            open_append(p)?;
        }
        *self.path.lock().unwrap_or_else(|p| p.into_inner()) = path;
        self.format.store(format as u8, Relaxed);
        self.level.store(level as u8, Relaxed);
        self.reopen();
        Ok(())
    }

    /// Makes every writer reopen the file on its next line (SIGHUP, after logrotate).
    pub fn reopen(&self) {
        self.generation.fetch_add(1, Relaxed);
    }

    /// The current level.
    pub fn level(&self) -> Level {
        Level::from_u8(self.level.load(Relaxed))
    }

    /// The current format.
    pub fn format(&self) -> LogFormat {
        if self.format.load(Relaxed) == LogFormat::Json as u8 {
            LogFormat::Json
        } else {
            LogFormat::Text
        }
    }

    /// A writer for one thread: each line is written as it is finished.
    pub fn writer(self: &Arc<Self>) -> LogWriter {
        LogWriter {
            logger: self.clone(),
            file: None,
            line: String::with_capacity(512),
            json: false,
            fields: 0,
            batch: None,
        }
    }

    /// A writer for an event loop: finished lines wait in a buffer until
    /// [`LogWriter::flush`] (once per loop turn) or until [`LOG_BATCH_MAX`] bytes wait, so
    /// a turn that ends several transactions costs one `write`. Each write holds whole lines
    /// only and at most `LOG_BATCH_MAX` bytes (a lone longer line aside), so lines from
    /// several threads never interleave mid-line, even on a pipe.
    pub fn batched_writer(self: &Arc<Self>) -> LogWriter {
        let mut w = self.writer();
        w.batch = Some(Vec::with_capacity(LOG_BATCH_MAX));
        w
    }
}

/// The most bytes a batched writer holds before writing: `PIPE_BUF` on Linux, the size up to
/// which a write to a pipe is atomic.
pub const LOG_BATCH_MAX: usize = 4096;

/// One thread's handle on the [`Logger`]: its own buffer and its own file descriptor.
#[derive(Debug)]
pub struct LogWriter {
    logger: Arc<Logger>,
    /// The generation last looked at and the file opened then (`None`: stderr).
    file: Option<(u64, Option<File>)>,
    line: String,
    json: bool,
    fields: usize,
    /// Finished lines not yet written (`None`: write each line at once).
    batch: Option<Vec<u8>>,
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

impl LogWriter {
    /// Whether lines at `level` are written now.
    pub fn enabled(&self, level: Level) -> bool {
        level != Level::Off && level <= self.logger.level()
    }

    /// Starts a line (`time`, `level`, `event` first); `None` when `level` is off. Add fields,
    /// then [`Line::finish`].
    pub fn line(&mut self, level: Level, time: SystemTime, event: &str) -> Option<Line<'_>> {
        if !self.enabled(level) {
            return None;
        }
        self.line.clear();
        self.json = self.logger.format() == LogFormat::Json;
        self.fields = 0;
        if self.json {
            self.line.push('{');
        }
        let mut line = Line { w: self };
        line.str("time", &rfc3339_millis(time));
        line.str("level", level.label());
        line.str("event", event);
        Some(line)
    }

    fn write_line(&mut self) {
        let Some(batch) = self.batch.as_mut() else {
            let line = std::mem::take(&mut self.line);
            self.write_out(line.as_bytes());
            self.line = line;
            return;
        };
        if batch.len() + self.line.len() > LOG_BATCH_MAX {
            self.flush();
        }
        if let Some(batch) = self.batch.as_mut() {
            batch.extend_from_slice(self.line.as_bytes());
        }
    }

    /// Writes the lines a batched writer holds (nothing to do for an unbatched one).
    pub fn flush(&mut self) {
        let Some(batch) = self.batch.take() else {
            return;
        };
        if !batch.is_empty() {
            self.write_out(&batch);
        }
        let mut batch = batch;
        batch.clear();
        self.batch = Some(batch);
    }

    /// One write of whole lines to the log file (or stderr).
    fn write_out(&mut self, bytes: &[u8]) {
        let generation = self.logger.generation.load(Relaxed);
        if self.file.as_ref().map_or(true, |(g, _)| *g != generation) {
            // Only here (first line, after a reopen or reload) is the path looked at.
            let path = self
                .logger
                .path
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            // `None` inside: stderr, or a file that cannot be opened now (a full disk, a
            // removed directory): stderr rather than nothing.
            self.file = Some((generation, path.and_then(|p| open_append(&p).ok())));
        }
        match self.file.as_mut() {
            Some((_, Some(f))) => {
                let _ = f.write_all(bytes);
            }
            _ => {
                let _ = io::stderr().lock().write_all(bytes);
            }
        }
    }
}

/// A line being built; fields keep the order they are added in.
pub struct Line<'a> {
    w: &'a mut LogWriter,
}

impl Line<'_> {
    /// A text field (escaped as the format needs).
    pub fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.key(key);
        if self.w.json {
            push_json_string(&mut self.w.line, value);
        } else {
            text_value(&mut self.w.line, value);
        }
        self
    }

    /// A number.
    pub fn u64(&mut self, key: &str, value: u64) -> &mut Self {
        self.key(key);
        let _ = write!(self.w.line, "{value}");
        self
    }

    /// A number with the given decimals.
    pub fn f64(&mut self, key: &str, value: f64, decimals: usize) -> &mut Self {
        self.key(key);
        if value.is_finite() {
            let _ = write!(self.w.line, "{value:.decimals$}");
        } else {
            self.w.line.push('0');
        }
        self
    }

    /// A boolean: `yes`/`no` in text, `true`/`false` in JSON.
    pub fn bool(&mut self, key: &str, value: bool) -> &mut Self {
        self.key(key);
        self.w.line.push_str(match (self.w.json, value) {
            (true, true) => "true",
            (true, false) => "false",
            (false, true) => "yes",
            (false, false) => "no",
        });
        self
    }

    /// Ends the line and writes it.
    pub fn finish(&mut self) {
        if self.w.json {
            self.w.line.push('}');
        }
        self.w.line.push('\n');
        self.w.write_line();
    }

    fn key(&mut self, key: &str) {
        let l = &mut self.w.line;
        if self.w.fields > 0 {
            l.push_str(if self.w.json { "," } else { " " });
        }
        self.w.fields += 1;
        if self.w.json {
            push_json_string(l, key);
            l.push(':');
        } else {
            l.push_str(key);
            l.push('=');
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Text values: bare when made only of visible characters other than `"`, `\` and `=`;
/// otherwise in double quotes with `\"`, `\\`, `\n`, `\r`, `\t` and `\xHH` for other control
/// characters. Empty values are `""`.
fn text_value(out: &mut String, v: &str) {
    let bare = !v.is_empty()
        && v.chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '"' | '\\' | '='));
    if bare {
        out.push_str(v);
        return;
    }
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() && (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `v` as a JSON string literal (RFC 8259 §7; U+2028/U+2029 and DEL escaped too, so
/// the line is also valid JavaScript and safe in terminals). The one JSON escaper of the crate.
pub fn push_json_string(out: &mut String, v: &str) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `2026-01-02T03:04:05.678Z`.
pub fn rfc3339_millis(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, m, day) = crate::relay::stamp::civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Parses one text line back into `(key, value)` pairs (the inverse of the writer; for tests
/// and tools). `None` when the line is not well formed.
pub fn parse_text_line(line: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = line.trim_end_matches('\n').chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(out);
        }
        let mut key = String::new();
        loop {
            match chars.next()? {
                '=' => break,
                c => key.push(c),
            }
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' => break,
                    '\\' => match chars.next()? {
                        'n' => value.push('\n'),
                        'r' => value.push('\r'),
                        't' => value.push('\t'),
                        'x' => {
                            let h: String = [chars.next()?, chars.next()?].iter().collect();
                            value.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
                        }
                        'u' => {
                            if chars.next()? != '{' {
                                return None;
                            }
                            let mut h = String::new();
                            loop {
                                match chars.next()? {
                                    '}' => break,
                                    c => h.push(c),
                                }
                            }
                            value.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
                        }
                        c => value.push(c),
                    },
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flat JSON object of strings, numbers and booleans, parsed back (no serde_json here).
    fn parse_json_line(line: &str) -> Option<Vec<(String, String)>> {
        let s = line.trim_end().strip_prefix('{')?.strip_suffix('}')?;
        let mut chars = s.chars().peekable();
        let mut out = Vec::new();
        let string = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| -> Option<String> {
            if chars.next()? != '"' {
                return None;
            }
            let mut v = String::new();
            loop {
                match chars.next()? {
                    '"' => return Some(v),
                    '\\' => match chars.next()? {
                        'n' => v.push('\n'),
                        'r' => v.push('\r'),
                        't' => v.push('\t'),
                        'u' => {
                            let h: String = (0..4).filter_map(|_| chars.next()).collect();
                            v.push(char::from_u32(u32::from_str_radix(&h, 16).ok()?)?);
                        }
                        c => v.push(c),
                    },
                    c if (c as u32) < 0x20 => return None,
                    c => v.push(c),
                }
            }
        };
        loop {
            let key = string(&mut chars)?;
            if chars.next()? != ':' {
                return None;
            }
            let value = if chars.peek() == Some(&'"') {
                string(&mut chars)?
            } else {
                let mut v = String::new();
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    v.push(c);
                    chars.next();
                }
                let ok = v == "true" || v == "false" || v.parse::<f64>().is_ok();
                if !ok {
                    return None;
                }
                v
            };
            out.push((key, value));
            match chars.next() {
                None => return Some(out),
                Some(',') => {}
                Some(_) => return None,
            }
        }
    }

    const TRICKY: &[(&str, &str)] = &[
        ("plain", "mx.example.com"),
        ("empty", ""),
        ("space", "a b"),
        ("quote", "say \"hi\""),
        ("backslash", "C:\\dir"),
        ("equals", "a=b"),
        ("newline", "line1\nline2\r\n"),
        ("tab_and_controls", "\t\x00\x1b\x7f"),
        ("unicode", "jörg@exämple.de"),
        ("unicode_control", "a\u{85}b\u{2028}c"),
        ("injection", "x\" level=error event=fake"),
    ];

    fn write_tricky(format: LogFormat) -> String {
        let dir =
            std::env::temp_dir().join(format!("conbool-logging-{}-{format:?}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let logger = Logger::new(format, Level::Info, Some(dir.clone())).unwrap();
        let mut w = logger.writer();
        for (key, value) in TRICKY {
            let mut line = w.line(Level::Info, UNIX_EPOCH, "msg").unwrap();
            line.str(key, value)
                .u64("size", 42)
                .f64("score", 5.25, 2)
                .bool("tls", true);
            line.finish();
        }
        assert!(w.line(Level::Debug, UNIX_EPOCH, "msg").is_none());
        let text = std::fs::read_to_string(&dir).unwrap();
        let _ = std::fs::remove_file(&dir);
        text
    }

    #[test]
    fn text_lines_parse_back() {
        let text = write_tricky(LogFormat::Text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), TRICKY.len(), "{text}");
        for ((key, value), line) in TRICKY.iter().zip(lines) {
            let fields = parse_text_line(line).unwrap_or_else(|| panic!("{key}: {line}"));
            let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                keys,
                ["time", "level", "event", key, "size", "score", "tls"],
                "{key}: {line}"
            );
            assert_eq!(fields[0].1, "1970-01-01T00:00:00.000Z", "{key}");
            assert_eq!(fields[3].1, *value, "{key}: {line}");
            assert_eq!(fields[5].1, "5.25", "{key}");
            assert_eq!(fields[6].1, "yes", "{key}");
        }
    }

    #[test]
    fn json_lines_parse_back() {
        let text = write_tricky(LogFormat::Json);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), TRICKY.len(), "{text}");
        for ((key, value), line) in TRICKY.iter().zip(lines) {
            let fields = parse_json_line(line).unwrap_or_else(|| panic!("{key}: {line}"));
            assert_eq!(fields.len(), 7, "{key}: {line}");
            assert_eq!(fields[3], (key.to_string(), value.to_string()), "{line}");
            assert_eq!(fields[4].1, "42");
            assert_eq!(fields[6].1, "true");
        }
    }

    #[test]
    fn reopen_follows_a_rotated_file() {
        let dir = std::env::temp_dir().join(format!("conbool-rotate-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("conbool.log");
        let logger = Logger::new(LogFormat::Text, Level::Info, Some(path.clone())).unwrap();
        let mut w = logger.writer();
        w.line(Level::Info, UNIX_EPOCH, "one").unwrap().finish();
        std::fs::rename(&path, dir.join("conbool.log.1")).unwrap();
        // Until the reopen, lines follow the moved file (what logrotate expects).
        w.line(Level::Info, UNIX_EPOCH, "two").unwrap().finish();
        logger.reopen();
        w.line(Level::Info, UNIX_EPOCH, "three").unwrap().finish();
        let old = std::fs::read_to_string(dir.join("conbool.log.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(
            old.contains("event=one") && old.contains("event=two"),
            "{old}"
        );
        assert!(
            new.contains("event=three") && !new.contains("event=two"),
            "{new}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn batched_lines_wait_for_flush_and_stay_whole() {
        let path = std::env::temp_dir().join(format!("conbool-batch-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let logger = Logger::new(LogFormat::Text, Level::Info, Some(path.clone())).unwrap();
        let mut w = logger.batched_writer();
        w.line(Level::Info, UNIX_EPOCH, "one").unwrap().finish();
        let read = || std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(read(), "", "a batched line waits for the flush");
        w.flush();
        assert_eq!(read().lines().count(), 1);
        // More than a batch's worth: written in several writes, every line whole.
        let long = "x".repeat(300);
        for _ in 0..40 {
            w.line(Level::Info, UNIX_EPOCH, "many")
                .unwrap()
                .str("pad", &long)
                .finish();
        }
        let before_flush = read();
        assert!(before_flush.lines().count() > 1, "a full batch is written");
        assert!(before_flush.ends_with('\n'), "only whole lines are written");
        drop(w);
        let text = read();
        assert_eq!(text.lines().count(), 41, "dropping the writer flushes");
        assert!(text.lines().all(|l| parse_text_line(l).is_some()));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn levels_filter() {
        let logger = Logger::new(LogFormat::Text, Level::Warn, None).unwrap();
        let w = logger.writer();
        assert!(w.enabled(Level::Error) && w.enabled(Level::Warn));
        assert!(!w.enabled(Level::Info) && !w.enabled(Level::Off));
        assert!(!Logger::off().writer().enabled(Level::Error));
    }

    #[test]
    fn rfc3339() {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_767_323_045_678);
        assert_eq!(rfc3339_millis(t), "2026-01-02T03:04:05.678Z");
    }
}
