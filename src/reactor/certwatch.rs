//! Reloading certificates when their files change: every certificate, key and CA file the
//! configuration names (`[tls]` and its `[[tls.sni]]` entries, each tenant's `next_hop_ca`, `client_cert`, `client_key`) is
//! looked at every `tls.reload_check_s` seconds by the main thread, never per connection. A
//! look is one `stat` per file: modification time, size, inode and device, so a file renamed
//! into place (as certbot and most deployment tools do) or rewritten in place is seen.
//!
//! When one changed, every TLS configuration is rebuilt from the files and handed to the
//! workers ([`RelayHandle::reload`]): new handshakes use it, established sessions keep theirs.
//! A rebuild that fails (a file half-written, a key that does not match its certificate, bad
//! PEM) changes nothing and says why; it is tried again when a file changes again, not at
//! every look (a broken file would otherwise be reported every interval).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::config::{defaults, Config};
use crate::reactor::RelayHandle;
use crate::relay::session::Snapshot;

/// What one look at a file saw; `None` in [`CertWatch`] when it could not be looked at
/// (missing, or a rename in progress).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
    device: u64,
}

impl Stamp {
    /// Follows symbolic links: a certbot `live/` link moved to a new `archive/` file is a
    /// change.
    fn of(path: &Path) -> Option<Stamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            inode: meta.ino(),
            device: meta.dev(),
        })
    }
}

/// The certificate, key and CA files of one configuration, with what the last look saw.
#[derive(Debug)]
pub struct CertWatch {
    /// `(config key, path)`, e.g. `("tenant[0].client_cert", "/etc/conbool/client.pem")`.
    files: Vec<(String, PathBuf)>,
    stamps: Vec<Option<Stamp>>,
}

impl CertWatch {
    /// Every certificate, key and CA file `config` names, looked at now.
    pub fn new(config: &Config) -> CertWatch {
        let mut files = Vec::new();
        if let Some(tls) = &config.tls {
            files.push(("tls.cert".to_string(), tls.cert.clone()));
            files.push(("tls.key".to_string(), tls.key.clone()));
            let named = [
                ("tls.client_ca", &tls.client_ca),
                ("tls.client_cert", &tls.client_cert),
                ("tls.client_key", &tls.client_key),
            ];
            for (key, path) in named {
                if let Some(path) = path {
                    files.push((key.to_string(), path.clone()));
                }
            }
            for (i, sni) in tls.sni.iter().enumerate() {
                files.push((format!("tls.sni[{i}].cert"), sni.cert.clone()));
                files.push((format!("tls.sni[{i}].key"), sni.key.clone()));
            }
        }
        for (i, t) in config.tenants.iter().enumerate() {
            let named = [
                ("next_hop_ca", &t.next_hop_ca),
                ("client_cert", &t.client_cert),
                ("client_key", &t.client_key),
            ];
            for (key, path) in named {
                if let Some(path) = path {
                    files.push((format!("tenant[{i}].{key}"), path.clone()));
                }
            }
        }
        let stamps = files.iter().map(|(_, path)| Stamp::of(path)).collect();
        CertWatch { files, stamps }
    }

    /// How often `config` asks for a look (`tls.reload_check_s`; 60 s without `[tls]`);
    /// `None` when it is 0 (only SIGHUP reloads).
    pub fn interval(config: &Config) -> Option<Duration> {
        let seconds = config
            .tls
            .as_ref()
            .map_or(defaults::TLS_RELOAD_CHECK_S, |t| t.reload_check_s);
        (seconds > 0).then(|| Duration::from_secs(seconds))
    }

    /// Whether there is any file to look at.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Looks at every file; returns those that changed since the last look as
    /// `key (path)`, and remembers what it saw.
    pub fn changed(&mut self) -> Vec<String> {
        let mut changed = Vec::new();
        for ((key, path), seen) in self.files.iter().zip(self.stamps.iter_mut()) {
            let now = Stamp::of(path);
            if now != *seen {
                *seen = now;
                changed.push(format!("{key} ({})", path.display()));
            }
        }
        changed
    }
}

/// What [`reload_if_changed`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum WatchOutcome {
    /// No file changed.
    Unchanged,
    /// These files changed and every worker now uses the new certificates.
    Reloaded(Vec<String>),
    /// These files changed but the certificates cannot be used: the running ones stay.
    Refused {
        /// The files that changed, `key (path)`.
        changed: Vec<String>,
        /// Why: the file and the problem.
        error: String,
    },
}

/// One look: when a file of `watch` changed, rebuilds the TLS configurations of `snapshot`
/// (the running configuration) and hands them to the workers of `relay`.
pub fn reload_if_changed(
    watch: &mut CertWatch,
    relay: &RelayHandle,
    snapshot: &Snapshot,
) -> WatchOutcome {
    let changed = watch.changed();
    if changed.is_empty() {
        return WatchOutcome::Unchanged;
    }
    match relay.reload(snapshot) {
        Ok(()) => WatchOutcome::Reloaded(changed),
        Err(error) => WatchOutcome::Refused { changed, error },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Tls;
    use crate::tls::testpki::TempDir;

    #[test]
    fn changes_are_seen_once_whatever_made_them() {
        let dir = TempDir::new("certwatch_changes");
        let cert = dir.write("cert.pem", "one");
        let key = dir.write("key.pem", "key");
        let ca = dir.write("ca.pem", "ca");
        let client = dir.write("client.pem", "client");
        let mut config = Config::embedded_defaults();
        let mut tls = Tls::new(cert.clone(), key.clone());
        tls.client_ca = Some(ca.clone());
        config.tls = Some(tls);
        config.tenants[0].client_cert = Some(client.clone());
        config.tenants[0].client_key = Some(key.clone());
        let mut watch = CertWatch::new(&config);
        assert!(!watch.is_empty());
        assert!(watch.changed().is_empty(), "nothing changed yet");

        type Change<'a> = (&'a str, &'a dyn Fn(), &'a [&'a str]);
        let renamed = dir.write("cert.pem.new", "two");
        let rows: &[Change<'_>] = &[
            (
                "renamed_into_place",
                &|| std::fs::rename(&renamed, &cert).unwrap(),
                &["tls.cert"],
            ),
            (
                "rewritten_longer",
                &|| std::fs::write(&ca, "ca, longer").unwrap(),
                &["tls.client_ca"],
            ),
            (
                "one_file_two_keys",
                &|| std::fs::write(&key, "another key").unwrap(),
                &["tls.key", "tenant[0].client_key"],
            ),
            (
                "removed",
                &|| std::fs::remove_file(&client).unwrap(),
                &["tenant[0].client_cert"],
            ),
            (
                "back_again",
                &|| std::fs::write(&client, "client").unwrap(),
                &["tenant[0].client_cert"],
            ),
        ];
        for (row, change, want) in rows {
            change();
            let got = watch.changed();
            let keys: Vec<&str> = got
                .iter()
                .map(|c| c.split_once(' ').map_or(c.as_str(), |(k, _)| k))
                .collect();
            assert_eq!(keys, *want, "row {row}: {got:?}");
            assert!(watch.changed().is_empty(), "row {row}: reported once");
        }
    }

    #[test]
    fn the_interval_comes_from_tls_reload_check_s() {
        let mut config = Config::embedded_defaults();
        assert_eq!(
            CertWatch::interval(&config),
            Some(Duration::from_secs(defaults::TLS_RELOAD_CHECK_S))
        );
        assert!(CertWatch::new(&config).is_empty());
        let mut tls = Tls::new("c.pem".into(), "k.pem".into());
        tls.reload_check_s = 5;
        config.tls = Some(tls.clone());
        assert_eq!(CertWatch::interval(&config), Some(Duration::from_secs(5)));
        tls.reload_check_s = 0;
        config.tls = Some(tls);
        assert_eq!(CertWatch::interval(&config), None);
    }
}
