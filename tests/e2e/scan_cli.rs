//! `conbool scan` as an operator runs it: the binary on message files, with the built-in rules
//! and with a model trained by `conbool train`, saying where each rule hit.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::temp::TempDir;

fn conbool(args: &[&str], dir: &TempDir, stdin: Option<&[u8]>) -> String {
    let out = run(args, dir, stdin);
    assert!(
        out.status.success(),
        "conbool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Runs conbool in `dir` with `args`, `stdin` on its standard input, whatever it exits with.
fn run(args: &[&str], dir: &TempDir, stdin: Option<&[u8]>) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_conbool"))
        .args(args)
        .current_dir(&dir.0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("conbool");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.unwrap_or_default()).expect("stdin");
    drop(input);
    child.wait_with_output().expect("runs")
}

fn ham(i: usize) -> String {
    format!(
        "From: a{i}@example.com\r\nTo: b@example.org\r\nSubject: lunch {i}\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <{i}@example.com>\r\n\r\nSee you at noon, the meeting notes are attached.\r\n"
    )
}

fn spam(i: usize) -> String {
    format!(
        "From: win{i}@lottery.example\r\nTo: b@example.org\r\nSubject: You have won {i}\r\n\r\nDear friend,\r\nClaim your prize now, click here: http://bit.ly/x{i}\r\n"
    )
}

#[test]
fn scan_says_where_each_rule_hit() {
    let dir = TempDir::new("scan-where");
    dir.write("spam.eml", &spam(1));
    let out = conbool(&["scan", "spam.eml"], &dir, None);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("spam.eml: YES "), "{out}");
    for want in [
        "  MISSING_DATE +0.5 header Date: absent",
        "  MISSING_DATE_AND_MESSAGE_ID +0.5 meta: MISSING_DATE && MISSING_MESSAGE_ID",
        "  URL_SHORTENER +0.5 url_host: \"bit.ly\" in \"http://bit.ly/x1\"",
        "  CLICK_HERE +1.2 body: \"click here\" in \"Claim your prize now, click here: http://bit.ly/x1\"",
    ] {
        assert!(lines.contains(&want), "{want:?} in\n{out}");
    }
    // The same from standard input, as JSON: one line per file, each hit with its place.
    let json = conbool(&["scan", "--json", "-"], &dir, Some(spam(1).as_bytes()));
    assert_eq!(json.lines().count(), 1, "{json}");
    assert!(
        json.contains(r#"{"rule":"CLICK_HERE","score":1.2,"target":"body","match":"click here","context":"Claim your prize now, click here: http://bit.ly/x1"}"#),
        "{json}"
    );
}

/// A training set of one class is refused; one with few of a class trains, with a warning.
#[test]
fn train_needs_both_classes_and_warns_on_few() {
    let dir = TempDir::new("train-classes");
    let mut labels = String::from("path\tlabel\tsource\n");
    for i in 0..3 {
        dir.write(&format!("ham{i}.eml"), &ham(i));
        labels.push_str(&format!("ham{i}.eml\tham\tt\n"));
    }
    dir.write("ham.tsv", &labels);
    let args = ["train", "--labels", "ham.tsv", "--out", "t.model"];
    let out = run(&args, &dir, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("0 spam and 3 ham to train on: a model needs messages of both"),
        "{err}"
    );
    assert!(!dir.0.join("t.model").exists(), "no model written");
    dir.write("spam0.eml", &spam(0));
    labels.push_str("spam0.eml\tspam\tt\n");
    dir.write("both.tsv", &labels);
    let out = run(
        &["train", "--labels", "both.tsv", "--out", "t.model"],
        &dir,
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: 1 spam and 3 ham to train on, fewer than 200 of a class"),
        "{err}"
    );
    assert!(dir.0.join("t.model").exists(), "the model is written");
}

#[test]
fn scan_with_a_model_gives_the_classifier_probability() {
    let dir = TempDir::new("scan-model");
    let mut labels = String::from("path\tlabel\tsource\n");
    for i in 0..6 {
        dir.write(&format!("ham{i}.eml"), &ham(i));
        dir.write(&format!("spam{i}.eml"), &spam(i));
        labels.push_str(&format!("ham{i}.eml\tham\tt\nspam{i}.eml\tspam\tt\n"));
    }
    dir.write("labels.tsv", &labels);
    conbool(
        &["train", "--labels", "labels.tsv", "--out", "t.model"],
        &dir,
        None,
    );
    let out = conbool(
        &["scan", "--model", "t.model", "spam1.eml", "ham1.eml"],
        &dir,
        None,
    );
    // Each file's verdict has a band rule, and its line gives the model's probability.
    let files: Vec<&str> = out.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(files.len(), 2, "{out}");
    for block in out.split("\nham1.eml: ") {
        let band = block
            .lines()
            .find(|l| l.starts_with("  CLASSIFIER_"))
            .unwrap_or_else(|| panic!("a band rule in\n{out}"));
        let p = band
            .split_once(" classifier: p = ")
            .and_then(|(_, p)| p.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("a probability in {band:?}"));
        assert!((0.0..=1.0).contains(&p), "{band}");
    }
    // Trained on these very messages, the model tells them apart.
    assert!(
        out.contains("  CLASSIFIER_99 +5.0 classifier: p = "),
        "{out}"
    );
    // Under the band, the features that raised the spam's probability, by name: words only
    // the spam has.
    let spam_like = out
        .lines()
        .find(|l| l.starts_with("    spam-like: "))
        .unwrap_or_else(|| panic!("a spam-like line in\n{out}"));
    assert!(
        [
            "\"text: prize\"",
            "\"text: claim\"",
            "\"subject: won\"",
            "\"URL host bit.ly\""
        ]
        .iter()
        .any(|t| spam_like.contains(t)),
        "{spam_like}"
    );
    let json = conbool(
        &["scan", "--json", "--model", "t.model", "spam1.eml"],
        &dir,
        None,
    );
    assert!(json.contains(r#""tokens":[{"token":""#), "{json}");
}

/// `conbool train` and `conbool eval` on mail as an operator keeps it: ham in a Maildir (with
/// a Maildir++ subfolder that is not ham), spam in an mbox; `eval` reports each by its path.
#[test]
fn train_and_eval_from_a_maildir_and_an_mbox() {
    let dir = TempDir::new("train-folders");
    for sub in [
        "Maildir/cur",
        "Maildir/new",
        "Maildir/tmp",
        "Maildir/.Junk/cur",
    ] {
        std::fs::create_dir_all(dir.0.join(sub)).expect("folder");
    }
    let mut mbox = String::new();
    for i in 0..8 {
        let sub = if i % 2 == 0 { "cur" } else { "new" };
        dir.write(&format!("Maildir/{sub}/{i}.host:2,S"), &ham(i));
        // A body line an mboxrd writer quotes, and the blank line before the next message.
        mbox.push_str(&format!(
            "From win{i}@lottery.example Mon Jan  1 00:00:0{i} 2024\n{}>From the desk of the lottery\n\n",
            spam(i).replace("\r\n", "\n")
        ));
    }
    // A copy of a ham message kept as spam too: both copies are left out of training.
    mbox.push_str(&format!(
        "From a0@example.com Mon Jan  1 00:00:09 2024\n{}\n",
        ham(0).replace("\r\n", "\n")
    ));
    dir.write("Maildir/tmp/8.host", &ham(8));
    dir.write("Maildir/.Junk/cur/9.host:2,S", &spam(9));
    dir.write("junk.mbox", &mbox);
    dir.write("spam1.eml", &spam(1));
    let out = conbool(
        &[
            "train",
            "--spam",
            "junk.mbox",
            "--ham",
            "Maildir",
            "--out",
            "t.model",
        ],
        &dir,
        None,
    );
    assert!(
        out.starts_with("conbool train: 17 messages (9 spam, 8 ham, 1 with the Message-ID of an earlier one, 2 left out: their Message-ID is under both labels)"),
        "{out}"
    );
    let out = conbool(&["scan", "--model", "t.model", "spam1.eml"], &dir, None);
    assert!(
        out.contains("  CLASSIFIER_99 +5.0 classifier: p = "),
        "{out}"
    );
    let out = conbool(
        &[
            "eval",
            "--spam",
            "junk.mbox",
            "--ham",
            "Maildir",
            "--folds",
            "3",
            "--folds-out",
            "folds.tsv",
        ],
        &dir,
        None,
    );
    assert!(
        out.contains("1 messages with the Message-ID of an earlier one (2 under both labels): each is in the fold of the first, and those under both labels are judged but not trained on"),
        "{out}"
    );
    // The copy (the mbox's ninth message) is in the fold of the ham message it copies (of
    // three folds, it is dealt another one by itself).
    let folds = std::fs::read_to_string(dir.0.join("folds.tsv")).expect("folds");
    let fold_of = |name: &str| {
        folds
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit('\t').next())
            .map(str::to_owned)
    };
    let first = fold_of("Maildir/cur/0.host:2,S\t");
    assert!(first.is_some(), "{folds}");
    assert_eq!(fold_of("junk.mbox#9\t"), first, "{folds}");
    for row in ["junk.mbox ", "Maildir ", "pooled "] {
        assert!(
            out.lines().any(|l| l.starts_with(row)),
            "a {row:?} row in\n{out}"
        );
    }
}
