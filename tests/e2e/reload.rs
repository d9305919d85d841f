//! Live reload (SIGHUP's work, `cli::run::reload`): everything is validated first, then swapped
//! in every worker; open sessions finish on the snapshot they started with; an invalid new
//! configuration or an address that cannot be bound is refused with the reason and the old one
//! kept; listen addresses added and removed without dropping sessions.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

use conbool::cli::run::{self, RunArgs};
use conbool::config::Config;
use conbool::reactor::{self, RelayHandle};
use conbool::relay::session::Snapshot;

use crate::peer::{scripted_next_hop, Client, HopScript, FAILSAFE};

/// A configuration file in a fresh directory.
struct ConfigFile {
    dir: PathBuf,
    path: PathBuf,
}

/// A valid configuration file's text.
fn valid(hostname: &str, listen: &[&str], next_hop: SocketAddr) -> String {
    let listen: Vec<String> = listen.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "[spam]\n[server]\nlisten = [{}]\nhostname = \"{hostname}\"\nworkers = 2\n\n\
         [[tenant]]\nname = \"example.com\"\ndomains = [\"example.com\"]\n\
         next_hop = \"{next_hop}\"\nnext_hop_tls = \"none\"\n\
         trusted_networks = [\"127.0.0.0/8\"]\n",
        listen.join(", ")
    )
}

impl ConfigFile {
    fn new(name: &str) -> ConfigFile {
        let dir = std::env::temp_dir().join(format!("conbool-e2e-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("conbool.toml");
        ConfigFile { dir, path }
    }

    fn write(&self, hostname: &str, listen: &[&str], next_hop: SocketAddr) {
        std::fs::write(&self.path, valid(hostname, listen, next_hop)).unwrap();
    }

    fn args(&self) -> RunArgs {
        RunArgs {
            config: Some(self.path.clone()),
            ..RunArgs::default()
        }
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(args: &RunArgs) -> (RelayHandle, Snapshot) {
    let snap = run::load_snapshot(args).expect("valid configuration");
    let options = reactor::RelayOptions {
        log_messages: false,
    };
    (
        reactor::spawn(snap.clone(), &options).expect("relay starts"),
        snap,
    )
}

/// A session on `addr` in the middle of DATA.
fn in_data(addr: SocketAddr) -> Client {
    let (mut c, greeting) = Client::connect(addr);
    assert!(greeting.starts_with("220 "), "{greeting}");
    assert!(c.cmd("EHLO e2e.test").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@example.com>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<b@example.com>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: across a reload\r\n\r\nfirst half\r\n");
    c
}

#[test]
fn open_sessions_finish_on_their_snapshot_and_new_ones_get_the_new_one() {
    let (hop, delivered) = scripted_next_hop(HopScript::AcceptData);
    let file = ConfigFile::new("reload-snapshot");
    file.write("old.test", &["127.0.0.1:0"], hop);
    let (relay, snap) = start(&file.args());
    let addr = relay.local_addrs[0];
    let mut open = in_data(addr);

    file.write("new.test", &["127.0.0.1:0"], hop);
    let (new, lines) = run::reload(&file.args(), &relay, &snap).expect("reload");
    assert_eq!(new.config.server.hostname, "new.test");
    assert!(
        lines[0].starts_with("configuration and certificates reloaded"),
        "{lines:?}"
    );
    assert_eq!(
        relay.listen_addrs(),
        [addr],
        "same listen address, same socket"
    );

    let (_, greeting) = Client::connect(addr);
    assert!(greeting.starts_with("220 new.test"), "{greeting}");
    open.send(b"second half\r\n.\r\n");
    let r = open.reply();
    assert!(r.starts_with("250"), "{r}");
    let content = delivered.recv_timeout(FAILSAFE).expect("delivered");
    let text = String::from_utf8_lossy(&content);
    assert!(text.contains("\tby old.test (conbool)"), "{text}");
    relay.stop().unwrap();
}

#[test]
fn an_invalid_configuration_or_an_unbindable_address_is_refused_and_the_old_kept() {
    let (hop, _) = scripted_next_hop(HopScript::AcceptData);
    let file = ConfigFile::new("reload-invalid");
    file.write("old.test", &["127.0.0.1:0"], hop);
    let (relay, snap) = start(&file.args());
    let addr = relay.local_addrs[0];

    // An address someone else holds (without SO_REUSEPORT): binding fails before any change.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let rows: Vec<(&str, String, &str)> = vec![
        (
            "bad_key",
            "[server]\nlisten = [\"127.0.0.1:0\"]\nhostnme = \"typo.test\"\n".to_string(),
            "hostnme",
        ),
        (
            "bad_value",
            "[limits]\nmax_recipients = \"many\"\n".to_string(),
            "max_recipients",
        ),
        ("not_toml", "[server\n".to_string(), "conbool.toml"),
        (
            "missing_rules",
            valid("new.test", &["127.0.0.1:0"], hop).replace(
                "[spam]\n",
                "[spam]\nrules = [\"/nonexistent/rules.toml\"]\n",
            ),
            "/nonexistent/rules.toml",
        ),
    ];
    for (name, text, reason) in rows {
        std::fs::write(&file.path, text).unwrap();
        let err = run::reload(&file.args(), &relay, &snap).expect_err(name);
        assert!(
            err.starts_with("reload refused, keeping the running configuration")
                && err.contains(reason),
            "{name}: {err}"
        );
    }
    file.write("new.test", &["127.0.0.1:0", &taken_addr], hop);
    let err = run::reload(&file.args(), &relay, &snap).expect_err("address in use");
    assert!(
        err.contains(&format!("server.listen {taken_addr}")),
        "{err}"
    );
    assert_eq!(relay.listen_addrs(), [addr]);

    // Still the old configuration, on the old listener.
    let (mut c, greeting) = Client::connect(addr);
    assert!(greeting.starts_with("220 old.test"), "{greeting}");
    assert!(c.cmd("QUIT").starts_with("221"));
    drop(taken);
    relay.stop().unwrap();
}

#[test]
fn listen_addresses_added_and_removed_without_dropping_sessions() {
    let (hop, delivered) = scripted_next_hop(HopScript::AcceptData);
    let file = ConfigFile::new("reload-listen");
    // 127.0.0.2 is loopback too (127.0.0.0/8): a second address on the same machine.
    file.write("a.test", &["127.0.0.1:0"], hop);
    let (relay, snap) = start(&file.args());
    let old = relay.local_addrs[0];
    let mut open = in_data(old);

    file.write("b.test", &["127.0.0.2:0"], hop);
    let (snap, _) = run::reload(&file.args(), &relay, &snap).expect("reload");
    let now = relay.listen_addrs();
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0].ip().to_string(), "127.0.0.2");
    let (mut c, greeting) = Client::connect(now[0]);
    assert!(greeting.starts_with("220 b.test"), "{greeting}");
    assert!(c.cmd("QUIT").starts_with("221"));
    assert!(
        TcpStream::connect(old).is_err(),
        "the removed listener no longer accepts"
    );

    // The session accepted on the removed listener finishes its message.
    open.send(b"second half\r\n.\r\n");
    let r = open.reply();
    assert!(r.starts_with("250"), "{r}");
    assert!(delivered.recv_timeout(FAILSAFE).is_ok());
    assert!(open.cmd("NOOP").starts_with("250"), "and goes on");

    // Both addresses, then back to one: the kept one keeps its socket.
    file.write("c.test", &["127.0.0.2:0", "127.0.0.1:0"], hop);
    let (snap, _) = run::reload(&file.args(), &relay, &snap).expect("reload");
    let both = relay.listen_addrs();
    assert_eq!(both.len(), 2, "{both:?}");
    assert_eq!(both[0], now[0]);
    for addr in &both {
        let (_, greeting) = Client::connect(*addr);
        assert!(greeting.starts_with("220 c.test"), "{addr}: {greeting}");
    }
    file.write("d.test", &["127.0.0.1:0"], hop);
    run::reload(&file.args(), &relay, &snap).expect("reload");
    assert_eq!(relay.listen_addrs(), [both[1]]);
    assert!(TcpStream::connect(now[0]).is_err());
    relay.stop().unwrap();
}

#[test]
fn reload_keeps_proxy_settings_per_generation() {
    // Turning PROXY protocol on applies to connections accepted after the reload.
    let (hop, _) = scripted_next_hop(HopScript::AcceptData);
    let mut config = Config::embedded_defaults();
    config.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.tenants[0].next_hop = hop.to_string();
    let rules = conbool::rules::CompiledRules::builtin(config.spam.threshold);
    let snap = Snapshot {
        config: Arc::new(config.clone()),
        rules: rules.clone(),
    };
    let options = reactor::RelayOptions {
        log_messages: false,
    };
    let relay = reactor::spawn(snap, &options).unwrap();
    let addr = relay.local_addrs[0];
    let (mut before, _) = Client::connect(addr);
    config.server.proxy_protocol = true;
    config.server.proxy_from = vec!["127.0.0.0/8".parse().unwrap()];
    relay
        .reload(&Snapshot {
            config: Arc::new(config),
            rules,
        })
        .unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(&mut s, b"PROXY TCP4 192.0.2.7 127.0.0.1 1 25\r\n").unwrap();
    let (mut after, greeting) = Client::over(s);
    assert!(greeting.starts_with("220 "), "{greeting}");
    assert!(after.cmd("NOOP").starts_with("250"));
    assert!(
        before.cmd("NOOP").starts_with("250"),
        "the older session goes on"
    );
    relay.stop().unwrap();
}
