//! `conbool exchange` end to end: the PowerShell it prints for Exchange Online is parsed back,
//! its two transport rules are played the way Exchange plays them, and the messages they route
//! go through the real relay to a sink standing in for Exchange's inbound connector. What comes
//! back is run through the rules again: nothing may be routed to the relay twice, spam must end
//! with SCL 7, ham must not, and the message types the rule skips must never reach the relay.
//!
//! The simulator is strict: a parameter it does not know fails the test, so a rule the
//! generator changes cannot pass by being ignored.

use std::sync::Arc;

use regex::{Regex, RegexBuilder};

use conbool::cli::exchange::{self, Target};
use conbool::cli::sink::{ReceivedMessage, Sink, SinkOptions};
use conbool::config::Config;
use conbool::reactor::{self, RelayOptions};
use conbool::relay::session::Snapshot;
use conbool::rules::{CompiledRules, GTUBE};

use crate::peer::Client;

// ---------------------------------------------------------------------------------------------
// PowerShell, as much of it as the generator writes: comments, `$var = @{ Key = value ... }`
// blocks and `[$result =] Cmdlet @var` lines.

/// A value in a splatted hashtable.
#[derive(Clone, Debug, PartialEq)]
enum Ps {
    Str(String),
    List(Vec<String>),
    Bool(bool),
    Int(i64),
}

impl Ps {
    fn text(&self) -> &str {
        match self {
            Ps::Str(s) => s,
            other => panic!("expected a string, got {other:?}"),
        }
    }

    fn texts(&self) -> Vec<String> {
        match self {
            Ps::Str(s) => vec![s.clone()],
            Ps::List(items) => items.clone(),
            other => panic!("expected strings, got {other:?}"),
        }
    }
}

/// One cmdlet call with its splatted parameters, in order.
#[derive(Clone, Debug)]
struct Command {
    cmdlet: String,
    params: Vec<(String, Ps)>,
}

impl Command {
    fn param(&self, name: &str) -> Option<&Ps> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }
}

fn is_quote(c: char) -> bool {
    matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}')
}

/// Reads a single-quoted literal at the start of `s`; returns it and the rest.
fn single_quoted(s: &str) -> (String, &str) {
    let mut chars = s.char_indices();
    match chars.next() {
        Some((_, c)) if is_quote(c) => {}
        _ => panic!("expected a quoted string at {s:?}"),
    }
    let mut out = String::new();
    let mut chars = chars.peekable();
    while let Some((i, c)) = chars.next() {
        if is_quote(c) {
            // A doubled quote (any of the kinds) is one literal quote.
            match chars.peek() {
                Some(&(_, next)) if is_quote(next) => {
                    out.push(c);
                    chars.next();
                }
                _ => return (out, &s[i + c.len_utf8()..]),
            }
        } else {
            out.push(c);
        }
    }
    panic!("unterminated string in {s:?}");
}

fn value(text: &str) -> Ps {
    let text = text.trim();
    match text {
        "$true" => return Ps::Bool(true),
        "$false" => return Ps::Bool(false),
        _ => {}
    }
    if let Ok(n) = text.parse::<i64>() {
        return Ps::Int(n);
    }
    if let Some(inner) = text.strip_prefix("@(").and_then(|t| t.strip_suffix(')')) {
        let mut items = Vec::new();
        let mut rest = inner.trim_start();
        while !rest.is_empty() {
            let (item, after) = single_quoted(rest);
            items.push(item);
            rest = after.trim_start();
            rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
        }
        return Ps::List(items);
    }
    let (s, rest) = single_quoted(text);
    assert!(
        rest.trim().is_empty(),
        "trailing text after {s:?}: {rest:?}"
    );
    Ps::Str(s)
}

/// Every splatted cmdlet call in `script`, in order.
fn parse_script(script: &str) -> Vec<Command> {
    let mut tables: Vec<(String, Vec<(String, Ps)>)> = Vec::new();
    let mut commands = Vec::new();
    let mut open: Option<(String, Vec<(String, Ps)>)> = None;
    for line in script.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if let Some((name, params)) = open.as_mut() {
            if t == "}" {
                tables.push((name.clone(), std::mem::take(params)));
                open = None;
            } else {
                let (key, v) = t.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
                params.push((key.trim().to_string(), value(v)));
            }
            continue;
        }
        if let Some(var) = t.strip_prefix('$').and_then(|t| t.strip_suffix(" = @{")) {
            open = Some((var.to_string(), Vec::new()));
            continue;
        }
        // `[$x = ]Cmdlet @var`
        let call = t.split_once(" = ").map_or(t, |(_, call)| call);
        if let Some((cmdlet, var)) = call.split_once(" @") {
            let params = tables
                .iter()
                .find(|(name, _)| name == var)
                .unwrap_or_else(|| panic!("no hashtable ${var}"))
                .1
                .clone();
            commands.push(Command {
                cmdlet: cmdlet.to_string(),
                params,
            });
        }
        // Anything else (`$ErrorActionPreference = ...`, pipelines) is not a splatted call.
    }
    assert!(open.is_none(), "unclosed hashtable");
    commands
}

// ---------------------------------------------------------------------------------------------
// Exchange, as far as these two rules go.

/// Where `*FromAddress*` conditions look (`SenderAddressLocation`).
#[derive(Clone, Copy, Debug, PartialEq)]
enum SenderLocation {
    Header,
    Envelope,
    HeaderOrEnvelope,
}

/// A transport rule as Exchange evaluates it.
#[derive(Clone, Debug)]
struct Rule {
    name: String,
    priority: i64,
    from_scope_in_org: bool,
    header_matches: Option<(String, Vec<Regex>)>,
    except_header_matches: Option<(String, Vec<Regex>)>,
    except_header_contains: Option<(String, Vec<String>)>,
    except_calendaring: bool,
    except_from_patterns: Vec<Regex>,
    sender_location: SenderLocation,
    route_to: Option<String>,
    set_scl: Option<i64>,
}

/// Exchange's patterns are .NET regular expressions matched without regard to case.
fn patterns(v: &Ps) -> Vec<Regex> {
    v.texts()
        .iter()
        .map(|p| {
            RegexBuilder::new(p)
                .case_insensitive(true)
                .build()
                .unwrap_or_else(|e| panic!("pattern {p:?}: {e}"))
        })
        .collect()
}

impl Rule {
    fn from_command(c: &Command) -> Rule {
        assert_eq!(c.cmdlet, "New-TransportRule");
        let mut r = Rule {
            name: String::new(),
            priority: i64::MAX,
            from_scope_in_org: false,
            header_matches: None,
            except_header_matches: None,
            except_header_contains: None,
            except_calendaring: false,
            except_from_patterns: Vec::new(),
            sender_location: SenderLocation::Header,
            route_to: None,
            set_scl: None,
        };
        let pair = |name: &str, values: &str| -> Option<(String, &Ps)> {
            let header = c.param(name)?.text().to_string();
            let v = c
                .param(values)
                .unwrap_or_else(|| panic!("{name} without {values}"));
            Some((header, v))
        };
        r.header_matches = pair("HeaderMatchesMessageHeader", "HeaderMatchesPatterns")
            .map(|(h, v)| (h, patterns(v)));
        r.except_header_matches = pair(
            "ExceptIfHeaderMatchesMessageHeader",
            "ExceptIfHeaderMatchesPatterns",
        )
        .map(|(h, v)| (h, patterns(v)));
        r.except_header_contains = pair(
            "ExceptIfHeaderContainsMessageHeader",
            "ExceptIfHeaderContainsWords",
        )
        .map(|(h, v)| (h, v.texts()));
        for (key, v) in &c.params {
            match key.as_str() {
                "Name" => r.name = v.text().to_string(),
                "Priority" => match v {
                    Ps::Int(n) => r.priority = *n,
                    other => panic!("Priority {other:?}"),
                },
                "FromScope" => {
                    assert_eq!(
                        v.text(),
                        "InOrganization",
                        "only InOrganization is simulated"
                    );
                    r.from_scope_in_org = true;
                }
                "ExceptIfMessageTypeMatches" => {
                    assert_eq!(v.text(), "Calendaring", "only Calendaring is simulated");
                    r.except_calendaring = true;
                }
                "ExceptIfFromAddressMatchesPatterns" => r.except_from_patterns = patterns(v),
                "SenderAddressLocation" => {
                    r.sender_location = match v.text() {
                        "Header" => SenderLocation::Header,
                        "Envelope" => SenderLocation::Envelope,
                        "HeaderOrEnvelope" => SenderLocation::HeaderOrEnvelope,
                        other => panic!("SenderAddressLocation {other}"),
                    }
                }
                "RouteMessageOutboundConnector" => r.route_to = Some(v.text().to_string()),
                "SetSCL" => match v {
                    Ps::Int(n) => r.set_scl = Some(*n),
                    other => panic!("SetSCL {other:?}"),
                },
                // Read as pairs above; descriptions change nothing.
                "HeaderMatchesMessageHeader"
                | "HeaderMatchesPatterns"
                | "ExceptIfHeaderMatchesMessageHeader"
                | "ExceptIfHeaderMatchesPatterns"
                | "ExceptIfHeaderContainsMessageHeader"
                | "ExceptIfHeaderContainsWords"
                | "Comments" => {}
                other => panic!("the simulator does not know New-TransportRule -{other}"),
            }
        }
        r
    }

    /// Whether the rule's conditions hold and none of its exceptions does.
    fn applies(&self, m: &Seen) -> bool {
        if self.from_scope_in_org && !m.sender_in_org {
            return false;
        }
        if let Some((header, pats)) = &self.header_matches {
            if !m.header_matches(header, pats) {
                return false;
            }
        }
        let excepted = self
            .except_header_matches
            .as_ref()
            .is_some_and(|(h, pats)| m.header_matches(h, pats))
            || self
                .except_header_contains
                .as_ref()
                .is_some_and(|(h, words)| {
                    m.headers(h).iter().any(|v| {
                        let v = v.to_ascii_lowercase();
                        words.iter().any(|w| v.contains(&w.to_ascii_lowercase()))
                    })
                })
            || (self.except_calendaring && m.calendaring)
            || (!self.except_from_patterns.is_empty()
                && self
                    .sender_addresses(m)
                    .iter()
                    .any(|a| self.except_from_patterns.iter().any(|p| p.is_match(a))));
        !excepted
    }

    fn sender_addresses(&self, m: &Seen) -> Vec<String> {
        let mut out = Vec::new();
        if self.sender_location != SenderLocation::Envelope {
            out.extend(m.header_from.clone());
        }
        if self.sender_location != SenderLocation::Header {
            out.push(m.envelope_from.clone());
        }
        out
    }
}

/// A message as Exchange's rules see it.
struct Seen {
    /// The envelope sender; the null reverse-path is `<>` (our reading of how Exchange shows it).
    envelope_from: String,
    header_from: Option<String>,
    sender_in_org: bool,
    calendaring: bool,
    /// Unfolded header fields, in order.
    fields: Vec<(String, String)>,
}

impl Seen {
    fn new(envelope_from: &str, content: &[u8], accepted_domains: &[String]) -> Seen {
        let text = String::from_utf8_lossy(content);
        let head = text.split("\r\n\r\n").next().unwrap_or("");
        let mut fields: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some((_, v)) = fields.last_mut() {
                    v.push(' ');
                    v.push_str(line.trim());
                }
            } else if let Some((k, v)) = line.split_once(':') {
                fields.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let header_from = fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("From"))
            .map(|(_, v)| match (v.rfind('<'), v.rfind('>')) {
                (Some(a), Some(b)) if a < b => v[a + 1..b].to_string(),
                _ => v.clone(),
            });
        let sender_in_org = header_from.as_deref().is_some_and(|addr| {
            addr.rsplit_once('@')
                .is_some_and(|(_, d)| accepted_domains.iter().any(|a| a.eq_ignore_ascii_case(d)))
        });
        let lower = text.to_ascii_lowercase();
        let calendaring = lower.contains("content-class: urn:content-classes:calendarmessage")
            || lower.contains("content-type: text/calendar");
        Seen {
            envelope_from: if envelope_from.is_empty() {
                "<>".to_string()
            } else {
                envelope_from.to_string()
            },
            header_from,
            sender_in_org,
            calendaring,
            fields,
        }
    }

    fn headers(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn header_matches(&self, name: &str, pats: &[Regex]) -> bool {
        self.headers(name)
            .iter()
            .any(|v| pats.iter().any(|p| p.is_match(v)))
    }
}

/// What Exchange's rules did to one message.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    routed_to: Option<String>,
    scl: Option<i64>,
    rules: Vec<String>,
}

/// Applies every rule in priority order (none of ours stops rule processing).
fn play(rules: &[Rule], m: &Seen) -> Outcome {
    let mut sorted: Vec<&Rule> = rules.iter().collect();
    sorted.sort_by_key(|r| r.priority);
    let mut out = Outcome::default();
    for r in sorted {
        if r.applies(m) {
            out.rules.push(r.name.clone());
            if let Some(c) = &r.route_to {
                out.routed_to = Some(c.clone());
            }
            if let Some(scl) = r.set_scl {
                out.scl = Some(scl);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The messages.

/// One row: what Exchange is handed, and what must become of it.
struct Row {
    name: &'static str,
    envelope_from: &'static str,
    rcpt: &'static str,
    /// Header fields after `X-Test-Row` and before the body.
    headers: &'static str,
    body: Vec<u8>,
    /// The routing rule sends it to the relay.
    routed: bool,
    /// SCL after the message came back (or after the first pass when not routed).
    final_scl: Option<i64>,
}

fn rows() -> Vec<Row> {
    let text = |s: &str| s.as_bytes().to_vec();
    vec![
        Row {
            name: "internal_ham",
            envelope_from: "alice@example.com",
            rcpt: "bob@partner.example",
            headers: "From: Alice <alice@example.com>\r\nTo: bob@partner.example\r\nSubject: lunch\r\n",
            body: text("See you at noon.\r\n"),
            routed: true,
            final_scl: None,
        },
        Row {
            name: "internal_spam_gtube",
            envelope_from: "mallory@example.com",
            rcpt: "victim@partner.example",
            headers: "From: mallory@example.com\r\nTo: victim@partner.example\r\nSubject: offer\r\n",
            body: [GTUBE, b"\r\n"].concat(),
            routed: true,
            final_scl: Some(7),
        },
        Row {
            name: "internal_ham_with_forged_flag",
            envelope_from: "carol@example.com",
            rcpt: "dave@partner.example",
            headers: "From: carol@example.com\r\nTo: dave@partner.example\r\nSubject: hi\r\nX-Conbool-Flag: NO\r\n",
            body: text("A message that tries to pre-clear itself.\r\n"),
            routed: true,
            final_scl: None,
        },
        Row {
            name: "external_sender",
            envelope_from: "eve@elsewhere.example",
            rcpt: "alice@example.com",
            headers: "From: eve@elsewhere.example\r\nTo: alice@example.com\r\nSubject: hello\r\n",
            body: text("Inbound mail does not take the outbound route.\r\n"),
            routed: false,
            final_scl: None,
        },
        Row {
            name: "calendar_invite",
            envelope_from: "alice@example.com",
            rcpt: "bob@partner.example",
            headers: "From: alice@example.com\r\nTo: bob@partner.example\r\nSubject: Meeting\r\n\
                      Content-Class: urn:content-classes:calendarmessage\r\n\
                      Content-Type: text/calendar; method=REQUEST; charset=utf-8\r\n",
            body: text("BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n"),
            routed: false,
            final_scl: None,
        },
        Row {
            name: "null_sender_bounce",
            envelope_from: "",
            rcpt: "bob@partner.example",
            headers: "Return-Path: <>\r\nFrom: MAILER-DAEMON@example.com\r\nTo: bob@partner.example\r\n\
                      Subject: Undeliverable: lunch\r\n",
            body: text("Your message could not be delivered.\r\n"),
            routed: false,
            final_scl: None,
        },
        Row {
            name: "ndr_without_return_path",
            envelope_from: "",
            rcpt: "bob@partner.example",
            headers: "From: Microsoft Outlook <postmaster@example.com>\r\nTo: bob@partner.example\r\n\
                      Subject: Undeliverable: report\r\n\
                      Content-Type: multipart/report; report-type=delivery-status; boundary=\"b\"\r\n",
            body: text("--b\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n--b--\r\n"),
            routed: false,
            final_scl: None,
        },
        Row {
            name: "already_carries_the_loop_header",
            envelope_from: "alice@example.com",
            rcpt: "bob@partner.example",
            headers: "From: alice@example.com\r\nTo: bob@partner.example\r\nSubject: again\r\n\
                      X-Conbool-example-com: true\r\n",
            body: text("Filtered once already.\r\n"),
            routed: false,
            final_scl: None,
        },
    ]
}

impl Row {
    fn content(&self) -> Vec<u8> {
        [
            format!("X-Test-Row: {}\r\n{}\r\n", self.name, self.headers).as_bytes(),
            &self.body,
        ]
        .concat()
    }
}

fn test_row(content: &[u8]) -> String {
    let text = String::from_utf8_lossy(content);
    text.lines()
        .find_map(|l| l.strip_prefix("X-Test-Row: "))
        .unwrap_or_else(|| panic!("no X-Test-Row in\n{text}"))
        .trim()
        .to_string()
}

/// The two transport rules of the generated Exchange Online script, checked against the
/// connectors it creates.
fn online_rules(config: &Config) -> Vec<Rule> {
    let script = exchange::script(config, Target::Online, None).expect("script");
    let commands = parse_script(&script);
    let outbound = commands
        .iter()
        .find(|c| c.cmdlet == "New-OutboundConnector")
        .expect("outbound connector");
    let connector = outbound.param("Name").expect("connector name").text();
    assert_eq!(
        outbound.param("IsTransportRuleScoped"),
        Some(&Ps::Bool(true)),
        "the connector is only used when a rule picks it"
    );
    let rules: Vec<Rule> = commands
        .iter()
        .filter(|c| c.cmdlet == "New-TransportRule")
        .map(Rule::from_command)
        .collect();
    assert_eq!(rules.len(), 2, "{script}");
    for r in &rules {
        if let Some(to) = &r.route_to {
            assert_eq!(
                to, connector,
                "rule {} routes to a connector the script creates",
                r.name
            );
        }
    }
    rules
}

// ---------------------------------------------------------------------------------------------

#[test]
fn exchange_online_rules_route_each_message_through_the_relay_at_most_once() {
    let sink = Sink::spawn(SinkOptions {
        keep_messages: true,
        ..SinkOptions::default()
    })
    .expect("sink");
    let mut config = Config::embedded_defaults();
    config.server.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.server.workers = 1;
    for t in &mut config.tenants {
        // The sink stands in for Exchange Online's inbound connector.
        t.next_hop = sink.addr.to_string();
    }
    let accepted = config.tenants[0].domains.clone();
    let rules = online_rules(&config);
    let rules_text = format!("{rules:#?}");
    let relay = reactor::spawn(
        Snapshot {
            rules: CompiledRules::builtin(config.spam.threshold),
            config: Arc::new(config),
        },
        &RelayOptions {
            log_messages: false,
        },
    )
    .expect("relay");

    // First pass: Exchange applies the rules to what its users send (and what it generates).
    let rows = rows();
    let (mut smtp, greeting) = Client::connect(relay.local_addrs[0]);
    assert!(greeting.starts_with("220"), "{greeting}");
    assert!(smtp.cmd("EHLO exchange.test").starts_with("250"));
    let mut sent = Vec::new();
    for row in &rows {
        let content = row.content();
        let first = play(&rules, &Seen::new(row.envelope_from, &content, &accepted));
        assert_eq!(
            first.routed_to.is_some(),
            row.routed,
            "{}: first pass {first:?}\n{rules_text}",
            row.name
        );
        if first.routed_to.is_none() {
            assert_eq!(first.scl, row.final_scl, "{}: {first:?}", row.name);
            continue;
        }
        let r = smtp.cmd(&format!("MAIL FROM:<{}>", row.envelope_from));
        assert!(r.starts_with("250"), "{}: MAIL {r}", row.name);
        let r = smtp.cmd(&format!("RCPT TO:<{}>", row.rcpt));
        assert!(r.starts_with("250"), "{}: RCPT {r}", row.name);
        let r = smtp.data(&content);
        assert!(r.starts_with("250"), "{}: end of data {r}", row.name);
        sent.push(row.name);
    }
    assert!(smtp.cmd("QUIT").starts_with("221"));

    // What the relay handed back; the relay answered 250 only after the sink had it.
    let back: Vec<ReceivedMessage> = sink.take_messages();
    let mut back_names: Vec<String> = back.iter().map(|m| test_row(&m.data)).collect();
    back_names.sort();
    let mut want: Vec<String> = sent.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(
        back_names, want,
        "exactly the routed messages came back, once each"
    );
    for row in rows.iter().filter(|r| !r.routed) {
        assert!(
            !back_names.iter().any(|n| n == row.name),
            "{}: reached the relay",
            row.name
        );
    }

    // Second pass: Exchange applies the rules again to what comes back.
    for m in &back {
        let name = test_row(&m.data);
        let row = rows.iter().find(|r| r.name == name).expect("row");
        let seen = Seen::new(&m.from, &m.data, &accepted);
        let second = play(&rules, &seen);
        assert_eq!(
            second.routed_to,
            None,
            "{name}: routed to the relay a second time\n{}",
            String::from_utf8_lossy(&m.data)
        );
        assert_eq!(second.scl, row.final_scl, "{name}: {second:?}");
        assert_eq!(seen.headers("X-Conbool-example-com"), ["true"], "{name}");
        let flag = if row.final_scl == Some(7) {
            "YES"
        } else {
            "NO"
        };
        assert_eq!(seen.headers("X-Conbool-Flag"), [flag], "{name}");
        assert_eq!(m.from, row.envelope_from, "{name}: envelope sender kept");
    }
    relay.stop().expect("relay stops");
}

#[test]
fn the_simulator_catches_rules_without_their_exceptions() {
    // Without these controls the test above could pass by never looking at an exception.
    let config = Config::embedded_defaults();
    let accepted = config.tenants[0].domains.clone();
    let rules = online_rules(&config);
    let returned =
        b"Received: from exchange.test\r\nX-Conbool-example-com: true\r\nX-Conbool-Flag: NO\r\n\
                     From: alice@example.com\r\nSubject: back\r\n\r\nbody\r\n";

    // (what is removed from the routing rule, message, what it must then do)
    type Cut = fn(&mut Rule);
    let ndr = b"From: postmaster@example.com\r\nSubject: Undeliverable\r\n\r\nfailed\r\n";
    let invite =
        b"From: alice@example.com\r\nContent-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\n";
    let bounce = b"Return-Path: <>\r\nFrom: alice@example.com\r\n\r\nbounce\r\n";
    let controls: &[(&str, Cut, &str, &[u8])] = &[
        (
            "loop_header",
            |r| r.except_header_matches = None,
            "alice@example.com",
            returned,
        ),
        (
            "envelope",
            |r| r.sender_location = SenderLocation::Header,
            "",
            ndr,
        ),
        (
            "calendaring",
            |r| r.except_calendaring = false,
            "alice@example.com",
            invite,
        ),
        (
            "return_path",
            |r| r.except_header_contains = None,
            "alice@example.com",
            bounce,
        ),
    ];
    for (name, cut, envelope, content) in controls {
        let seen = Seen::new(envelope, content, &accepted);
        assert_eq!(
            play(&rules, &seen).routed_to,
            None,
            "{name}: excepted as generated"
        );
        let mut broken = rules.clone();
        for r in broken.iter_mut().filter(|r| r.route_to.is_some()) {
            cut(r);
        }
        assert!(
            play(&broken, &seen).routed_to.is_some(),
            "{name}: the simulator did not notice the missing exception"
        );
    }
}

#[test]
fn powershell_strings_round_trip_through_the_parser() {
    let rows = [
        "Conbool",
        "O'Brien",
        "\u{2018}curly\u{2019}",
        "a = b",
        "$(not expanded)",
    ];
    for text in rows {
        assert_eq!(
            value(&exchange::quote(text)),
            Ps::Str(text.to_string()),
            "{text}"
        );
    }
    let mut config = Config::embedded_defaults();
    config.exchange.connector_name = "O'Brien \u{2019}Relay\u{2019}".to_string();
    let commands = parse_script(&exchange::script(&config, Target::Online, None).expect("script"));
    let route = commands
        .iter()
        .filter_map(|c| c.param("RouteMessageOutboundConnector"))
        .next()
        .expect("routing rule");
    assert_eq!(route.text(), "O'Brien \u{2019}Relay\u{2019}");
}
