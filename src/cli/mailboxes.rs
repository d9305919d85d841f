//! The labelled messages of `conbool train` and `conbool eval`: a labels file
//! (`--labels FILE.tsv`), or an operator's own mail as it is stored, labelled by where it is
//! (`--spam PATH --ham PATH`, as `sa-learn --spam` and `bogofilter -s` take it). `conbool
//! scan` lists its FILE arguments the same way ([`stored_under`]).
//!
//! A PATH is a message file, an mbox (messages each after a `From ` line, see
//! [`crate::mbox::message_starts`]), a Maildir (its `cur` and `new`; `tmp` holds deliveries in
//! progress), or a folder of any of these, read in name order. Inside a folder, names that
//! start with `.` are skipped: dot-files, and the subfolders of a Maildir++ mailbox (`.Junk`
//! inside an inbox is not ham). Each message's source, the row of `conbool eval`'s tables and
//! the list its `--internal-hosts` may name, is PATH as given.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::cli::scan::MAX_SCAN_FILE_BYTES;
use crate::cli::train::{read_labels, Labelled};
use crate::mbox::{message_starts, unquote_from_lines};

/// Where the labelled messages come from: the flags `conbool train` and `conbool eval` share.
#[derive(clap::Args, Debug, Clone)]
#[group(required = true, multiple = true)]
pub struct LabelledInput {
    /// Labelled messages: `path label source` per line (tab-separated, header line first).
    #[arg(long, value_name = "FILE.tsv", conflicts_with_all = ["spam", "ham"])]
    pub labels: Option<PathBuf>,
    /// Spam: a message file, an mbox, a Maildir, or a folder of them (repeatable; dot-files
    /// and Maildir++ subfolders inside a folder are skipped). The source of its messages is
    /// PATH as given.
    #[arg(long, value_name = "PATH", requires = "ham")]
    pub spam: Vec<PathBuf>,
    /// Ham: as --spam.
    #[arg(long, value_name = "PATH", requires = "spam")]
    pub ham: Vec<PathBuf>,
}

impl LabelledInput {
    /// Lists the messages (their bytes are read later, by [`read_message`]).
    pub fn read(&self) -> Result<Vec<Labelled>, String> {
        if let Some(path) = &self.labels {
            return read_labels(path);
        }
        if self.spam.is_empty() || self.ham.is_empty() {
            return Err("give --labels FILE.tsv, or both --spam PATH and --ham PATH".into());
        }
        let mut out = Vec::new();
        for (paths, spam) in [(&self.spam, true), (&self.ham, false)] {
            for path in paths {
                let before = out.len();
                list(path, spam, &mut out)?;
                if out.len() == before {
                    return Err(format!("{}: no messages there", path.display()));
                }
            }
        }
        Ok(out)
    }
}

/// A message as it is stored: its file, and its bytes there when the file is an mbox of
/// several messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The file.
    pub path: PathBuf,
    /// Its bytes within the file (start, end), in an mbox of several messages.
    pub part: Option<(u64, u64)>,
    /// The file's path as found under the root, with `#N` after an mbox's for its N-th
    /// message (from 1).
    pub name: String,
}

/// The messages under `root` (a message file, an mbox, a Maildir or a folder of them), in
/// the order described in the module's documentation.
pub fn stored_under(root: &Path) -> Result<Vec<Stored>, String> {
    let mut out = Vec::new();
    let mut add = |path: &Path, part: Option<(u64, u64)>, name: String| {
        out.push(Stored {
            path: path.to_path_buf(),
            part,
            name,
        })
    };
    walk(root, &mut HashSet::new(), &mut add)?;
    Ok(out)
}

/// Appends the messages under `root` to `out`, labelled `spam` or ham, source `root`.
fn list(root: &Path, spam: bool, out: &mut Vec<Labelled>) -> Result<(), String> {
    let source = root.display().to_string();
    out.extend(stored_under(root)?.into_iter().map(|m| Labelled {
        path: m.path,
        name: m.name,
        spam,
        source: source.clone(),
        part: m.part,
    }));
    Ok(())
}

/// [`stored_under`] of one file or folder. Symbolic links are followed (mailboxes linked into
/// one folder are read), each folder once (`seen`: their canonical paths), so a link back up
/// the tree ends.
fn walk(
    path: &Path,
    seen: &mut HashSet<PathBuf>,
    add: &mut impl FnMut(&Path, Option<(u64, u64)>, String),
) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let meta = std::fs::metadata(path).map_err(fail)?;
    if meta.is_file() {
        return file(path, meta.len(), add);
    }
    if !meta.is_dir() || !seen.insert(std::fs::canonicalize(path).map_err(fail)?) {
        return Ok(());
    }
    // A Maildir's messages are in `cur` and `new`; `tmp` and the Maildir++ subfolders beside
    // them are not read.
    let entries: Vec<PathBuf> = if ["cur", "new"].iter().all(|d| path.join(d).is_dir()) {
        vec![path.join("cur"), path.join("new")]
    } else {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path).map_err(fail)? {
            let entry = entry.map_err(fail)?;
            if !entry.file_name().as_encoded_bytes().starts_with(b".") {
                names.push(entry.path());
            }
        }
        names.sort();
        names
    };
    for entry in entries {
        walk(&entry, seen, add)?;
    }
    Ok(())
}

/// [`stored_under`] of one file of `len` bytes: one message, or each message of an mbox (named
/// `PATH#N`, N from 1).
fn file(
    path: &Path,
    len: u64,
    add: &mut impl FnMut(&Path, Option<(u64, u64)>, String),
) -> Result<(), String> {
    if len == 0 {
        return Ok(());
    }
    let name = path.display().to_string();
    let f = File::open(path).map_err(|e| format!("{name}: {e}"))?;
    let starts = message_starts(BufReader::new(f)).map_err(|e| format!("{name}: {e}"))?;
    if starts.len() < 2 {
        add(path, None, name);
        return Ok(());
    }
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(len);
        add(path, Some((start, end)), format!("{name}#{}", i + 1));
    }
    Ok(())
}

/// The bytes of a listed message: [`read_stored`] of its file and part.
pub fn read_message(l: &Labelled) -> Result<Vec<u8>, String> {
    read_stored(&l.path, l.part)
}

/// The bytes of a stored message (at most [`MAX_SCAN_FILE_BYTES`] of them): the whole file,
/// or its `part` of an mbox with the `>From ` lines unquoted.
pub fn read_stored(path: &Path, part: Option<(u64, u64)>) -> Result<Vec<u8>, String> {
    let fail = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = File::open(path).map_err(fail)?;
    let mut b = Vec::new();
    match part {
        None => {
            f.take(MAX_SCAN_FILE_BYTES)
                .read_to_end(&mut b)
                .map_err(fail)?;
            Ok(b)
        }
        Some((start, end)) => {
            f.seek(SeekFrom::Start(start)).map_err(fail)?;
            f.take(end.saturating_sub(start).min(MAX_SCAN_FILE_BYTES))
                .read_to_end(&mut b)
                .map_err(fail)?;
            Ok(unquote_from_lines(&b))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch folder under the system's temporary one, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir()
                .join(format!("conbool-mailboxes-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("scratch folder");
            Scratch(dir)
        }

        fn write(&self, path: &str, bytes: &[u8]) {
            let path = self.0.join(path);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("folder");
            std::fs::write(path, bytes).expect("write");
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn input(spam: &Path, ham: &Path) -> LabelledInput {
        LabelledInput {
            labels: None,
            spam: vec![spam.to_path_buf()],
            ham: vec![ham.to_path_buf()],
        }
    }

    const MBOX: &[u8] = b"From a@x Mon Jan  1 00:00:00 2024\nSubject: one\n\nbody\n>From the start\n\nFrom b@x Mon Jan  1 00:00:00 2024\nSubject: two\n\nFrom here on, body\n\nFrom c@x Mon Jan  1 00:00:00 2024\nSubject: three\n\nbye\n";

    #[test]
    fn maildir_mbox_and_folders() {
        let s = Scratch::new("kinds");
        // A Maildir inbox with a Maildir++ subfolder and a delivery in progress.
        s.write("inbox/cur/1:2,S", b"Subject: read\r\n\r\nx\r\n");
        s.write("inbox/new/2", b"Subject: new\r\n\r\nx\r\n");
        s.write("inbox/tmp/3", b"Subject: half written\r\n");
        s.write("inbox/.Junk/cur/4:2,", b"Subject: junk\r\n\r\nx\r\n");
        s.write("inbox/dovecot-uidlist", b"3 V1 N5\n");
        // A folder of an mbox, a message file, an empty file and a dot-file.
        s.write("junk/archive.mbox", MBOX);
        s.write(
            "junk/sub/one.eml",
            b"From x@y Tue\nSubject: single\n\nFrom me\n",
        );
        s.write("junk/empty", b"");
        s.write("junk/.hidden", b"Subject: hidden\r\n\r\nx\r\n");
        let spam = s.0.join("junk");
        let ham = s.0.join("inbox");
        let got = input(&spam, &ham).read().expect("listed");
        let rows: Vec<_> = got
            .iter()
            .map(|l| {
                let name = l.name.strip_prefix(&*s.0.to_string_lossy()).unwrap_or("?");
                (name.to_string(), l.spam, l.part)
            })
            .collect();
        let (two, three) = (70, 138);
        assert_eq!(
            rows,
            [
                ("/junk/archive.mbox#1".to_string(), true, Some((0, two))),
                ("/junk/archive.mbox#2".to_string(), true, Some((two, three))),
                (
                    "/junk/archive.mbox#3".to_string(),
                    true,
                    Some((three, MBOX.len() as u64))
                ),
                ("/junk/sub/one.eml".to_string(), true, None),
                ("/inbox/cur/1:2,S".to_string(), false, None),
                ("/inbox/new/2".to_string(), false, None),
            ]
        );
        assert!(got[..4]
            .iter()
            .all(|l| l.source == spam.display().to_string()));
        assert!(got[4..]
            .iter()
            .all(|l| l.source == ham.display().to_string()));
        // Each part reads as its own message, `>From ` unquoted; files read whole.
        let first = read_message(&got[0]).expect("read");
        assert_eq!(
            first,
            b"From a@x Mon Jan  1 00:00:00 2024\nSubject: one\n\nbody\nFrom the start\n\n"
        );
        let second = read_message(&got[1]).expect("read");
        assert!(second.starts_with(b"From b@x"), "{second:?}");
        assert!(second.ends_with(b"From here on, body\n\n"), "{second:?}");
        let third = read_message(&got[2]).expect("read");
        assert!(third.ends_with(b"Subject: three\n\nbye\n"), "{third:?}");
        assert_eq!(
            read_message(&got[3]).expect("read"),
            b"From x@y Tue\nSubject: single\n\nFrom me\n"
        );
    }

    /// A linked mailbox is read, and a link back up the tree ends: each folder is read once,
    /// so `elsewhere`, linked and then reached again through `up`, gives one message.
    #[cfg(unix)]
    #[test]
    fn links_are_followed_once() {
        let s = Scratch::new("links");
        s.write("mail/a.eml", b"Subject: a\r\n\r\nx\r\n");
        s.write("elsewhere/b.eml", b"Subject: b\r\n\r\nx\r\n");
        std::os::unix::fs::symlink(&s.0, s.0.join("mail/up")).expect("link");
        std::os::unix::fs::symlink(s.0.join("elsewhere"), s.0.join("mail/linked")).expect("link");
        let names: Vec<String> = stored_under(&s.0.join("mail"))
            .expect("listed")
            .into_iter()
            .map(|m| m.name)
            .collect();
        let root = s.0.display().to_string();
        assert_eq!(
            names,
            [
                format!("{root}/mail/a.eml"),
                format!("{root}/mail/linked/b.eml"),
            ]
        );
    }

    #[test]
    fn refusals_say_which_path() {
        let s = Scratch::new("refusals");
        s.write("ham/a.eml", b"Subject: a\r\n\r\nx\r\n");
        s.write("nothing/.only-hidden", b"Subject: a\r\n\r\nx\r\n");
        let missing = s.0.join("missing");
        let e = input(&missing, &s.0.join("ham")).read().unwrap_err();
        assert!(e.starts_with(&missing.display().to_string()), "{e}");
        let empty = s.0.join("nothing");
        let e = input(&empty, &s.0.join("ham")).read().unwrap_err();
        assert_eq!(e, format!("{}: no messages there", empty.display()));
        let only_spam = LabelledInput {
            ham: Vec::new(),
            ..input(&s.0.join("ham"), &s.0)
        };
        assert!(only_spam.read().unwrap_err().contains("both --spam"));
    }
}
