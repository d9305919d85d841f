//! The statistical classifier inside the rule engine: attaching a [`Model`] to
//! [`CompiledRules`] adds one rule per probability band ([`CLASSIFIER_BANDS`]); a [`Scan`]
//! then feeds its events to a [`Tokenizer`] too, and the band its probability falls in is a
//! hit like any other, so rules and classifier share one score and `spam.threshold`.
//!
//! [`Scan`]: crate::rules::Scan

use std::sync::Arc;

use crate::classify::{rule_feature, InternalHosts, Model, Tokenizer};
use crate::rules::compile::CompiledRules;
use crate::rules::file::{Action, Matcher, RuleError, RuleSpec, Target};
use crate::rules::verdict::HitSet;
use crate::rules::RuleId;

/// The band rules a model adds: name, lowest probability (inclusive), highest (exclusive),
/// score. With the default threshold 5.0, `CLASSIFIER_99` flags a message on its own,
/// `CLASSIFIER_95` with more rules, `CLASSIFIER_80` only shows (the model has weighed the
/// rules' hits already: a band score on top counts them twice), and the low bands take points
/// away from rules that hit on mail the classifier is sure is ham.
pub const CLASSIFIER_BANDS: &[(&str, f64, f64, f64)] = &[
    ("CLASSIFIER_99", 0.99, 2.0, 5.0),
    ("CLASSIFIER_95", 0.95, 0.99, 2.0),
    ("CLASSIFIER_80", 0.80, 0.95, 0.0),
    ("CLASSIFIER_20", 0.01, 0.20, -2.0),
    ("CLASSIFIER_01", -1.0, 0.01, -4.0),
];

/// The model and the ids of its band rules.
#[derive(Debug)]
pub(crate) struct ClassifierRules {
    pub model: Arc<Model>,
    /// Per band: its rule, lowest and highest probability.
    pub bands: Vec<(RuleId, f64, f64)>,
    /// Per rule id: the feature its hit adds ([`rule_feature`]; 0 for the bands).
    pub rule_features: Vec<u32>,
    /// The receiving side's hosts, whose `Received` fields the tokenizer does not read
    /// (`spam.internal_hosts`; [`CompiledRules::with_internal_hosts`]).
    pub internal_hosts: Arc<InternalHosts>,
}

impl ClassifierRules {
    /// A tokenizer for one message, with the model and the internal hosts.
    pub fn tokenizer<const NAMES: bool>(&self) -> Tokenizer<NAMES> {
        let mut t = Tokenizer::with_model(Some(Arc::clone(&self.model)));
        t.internal_hosts(&self.internal_hosts);
        t
    }

    /// Sets the band rule that the probability of `tokens` and the rules hit so far falls in
    /// (every other rule's hits are final by now: no rule reads the bands).
    pub fn set_hit(&self, tokens: &Tokenizer, hits: &mut HitSet) {
        let p = self.probability(tokens, hits);
        if let Some(&(id, _, _)) = self.bands.iter().find(|&&(_, lo, hi)| p >= lo && p < hi) {
            hits.set(id);
        }
    }

    /// The model's spam probability for the message's tokens with the rules in `hits` as
    /// features.
    pub fn probability(&self, tokens: &Tokenizer, hits: &HitSet) -> f64 {
        tokens
            .features()
            .probability_with_all(self.hit_features(hits))
    }

    /// The features the rules in `hits` add.
    fn hit_features<'a>(&'a self, hits: &'a HitSet) -> impl Iterator<Item = u32> + 'a {
        hits.iter()
            .filter_map(|id| self.rule_features.get(id.0 as usize).copied())
            .filter(|&f| f != 0)
    }

    /// Why the probability is what it is: every feature of `tokens` (a naming tokenizer fed
    /// the same events as the scan's) and of the rules in `hits` (`name` gives a rule's name),
    /// with what it adds to the log-odds, largest first; and the probability they give
    /// (`σ(bias + their sum)`, the scan's own).
    pub fn explain<'r>(
        &self,
        tokens: &Tokenizer<true>,
        hits: &HitSet,
        name: impl Fn(RuleId) -> &'r str,
    ) -> (Vec<(String, f64)>, f64) {
        let mut named = tokens.named_features();
        named.extend(hits.iter().filter_map(|id| {
            let f = *self.rule_features.get(id.0 as usize)?;
            (f != 0).then(|| (f, format!("rule {}", name(id))))
        }));
        let n = named.len();
        let mut each: Vec<(String, f64)> = named
            .into_iter()
            .map(|(f, what)| (what, self.model.contribution(f, n)))
            .collect();
        let z = self.model.bias() + each.iter().map(|(_, c)| c).sum::<f64>();
        each.sort_by(|a, b| b.1.total_cmp(&a.1));
        (each, 1.0 / (1.0 + (-z).exp()))
    }
}

impl CompiledRules {
    /// These rules plus the classifier `model` and its band rules ([`CLASSIFIER_BANDS`]).
    /// Fails when a rule file already uses one of the band names.
    pub fn with_model(mut self, model: Arc<Model>) -> Result<CompiledRules, RuleError> {
        let rule_features: Vec<u32> = self.specs.iter().map(|s| rule_feature(&s.name)).collect();
        let mut bands = Vec::with_capacity(CLASSIFIER_BANDS.len());
        for &(name, lo, hi, score) in CLASSIFIER_BANDS {
            let spec = RuleSpec {
                name: name.to_string(),
                description: format!(
                    "statistical classifier: spam probability {}",
                    band_text(lo, hi)
                ),
                action: Action::Score(score),
                target: Target::Classifier,
                header: None,
                matcher: Matcher::None,
                tests: Vec::new(),
                origin: "spam.model".into(),
                index: bands.len() + 1,
            };
            if self.find(name).is_some() {
                return Err(spec.error(
                    "name",
                    format!("{name:?} is reserved for the classifier (spam.model)"),
                ));
            }
            let id = RuleId(self.specs.len() as u32);
            self.specs.push(spec);
            bands.push((id, lo, hi));
        }
        let mut rule_features = rule_features;
        rule_features.resize(self.specs.len(), 0);
        self.classifier = Some(ClassifierRules {
            model,
            bands,
            rule_features,
            internal_hosts: Arc::default(),
        });
        Ok(self)
    }

    /// These rules with the receiving side's own hosts (`spam.internal_hosts`): the
    /// classifier does not read their `Received` fields at the top of a message, nor the
    /// checks recorded above them ([`crate::classify::Walk`]). The rules still see everything.
    /// Without a model attached first there is nothing for them to do.
    pub fn with_internal_hosts(mut self, hosts: Arc<InternalHosts>) -> CompiledRules {
        if let Some(c) = &mut self.classifier {
            c.internal_hosts = hosts;
        }
        self
    }

    /// The classifier features of the rules `hits` names (as [`ClassifierRules::set_hit`]
    /// gives them to the model), for training.
    pub(crate) fn rule_features_of(&self, hits: &HitSet) -> Vec<u32> {
        hits.iter()
            .filter_map(|id| self.specs.get(id.0 as usize))
            .filter(|s| s.target != Target::Classifier)
            .map(|s| rule_feature(&s.name))
            .collect()
    }

    /// Whether rule `id` is one of the classifier's band rules.
    pub fn is_classifier_band(&self, id: RuleId) -> bool {
        self.classifier
            .as_ref()
            .is_some_and(|c| c.bands.iter().any(|&(b, _, _)| b == id))
    }

    /// The attached classifier model, if any.
    pub fn model(&self) -> Option<&Arc<Model>> {
        self.classifier.as_ref().map(|c| &c.model)
    }
}

fn band_text(lo: f64, hi: f64) -> String {
    match (lo <= 0.0, hi > 1.0) {
        (true, _) => format!("below {hi}"),
        (_, true) => format!("at least {lo}"),
        _ => format!("{lo} to {hi}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ScanEvent, ScanSink};
    use crate::rules::{RuleSource, Scan};

    /// The built-in rules with a model of pseudo-random weights (every feature counts).
    fn default_rules_with_a_model() -> CompiledRules {
        let weights: Vec<f32> = (0..1u32 << 12)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 16) as f32 / 65536.0 - 0.5)
            .collect();
        let model = Arc::new(Model::from_weights(&weights, 0.0, 1).expect("model"));
        let source = RuleSource {
            origin: "built-in".into(),
            text: crate::rules::DEFAULT_RULES.into(),
        };
        let rules = CompiledRules::compile(&[source], 5.0).expect("compiles");
        rules.with_model(model).expect("attaches")
    }

    /// At the relay the envelope sender stands for the `Return-Path` field that the labelled
    /// messages got at their final delivery: the model sees the same features either way.
    #[test]
    fn the_scan_gives_the_envelope_sender_to_the_classifier() {
        let rules = Arc::new(default_rules_with_a_model());
        let probability = |envelope: Option<&str>, return_path: Option<&[u8]>| {
            let mut scan = Scan::new(Arc::clone(&rules));
            if let Some(sender) = envelope {
                scan.set_envelope(&crate::rules::Envelope {
                    helo: "mx.example".into(),
                    client_ip: "192.0.2.1".parse().expect("address"),
                    mail_from: sender.into(),
                    rcpts: vec!["user@example.com".into()],
                });
            }
            if let Some(v) = return_path {
                scan.event(ScanEvent::Header {
                    depth: 0,
                    name: b"Return-Path",
                    value: v,
                });
            }
            scan.event(ScanEvent::Header {
                depth: 0,
                name: b"From",
                value: b"news@shop.example",
            });
            scan.event(ScanEvent::HeaderEnd);
            scan.finish(100);
            scan.probability().expect("a model")
        };
        let delivered = probability(None, Some(b"<bounce@mailer.example>"));
        assert_eq!(probability(Some("bounce@mailer.example"), None), delivered);
        assert_ne!(probability(None, None), delivered);
    }

    /// Mail that Exchange Online routes to the relay carries Exchange's own hops and checks on
    /// top. With `spam.internal_hosts` listing Exchange's hosts the classifier reads the
    /// message as the sender sent it (as `conbool train --internal-hosts` leaves a mailbox
    /// export); without, Exchange's fields are features too.
    #[test]
    fn internal_hosts_keep_exchanges_hops_from_the_classifier() {
        const EXCHANGE: &str = "Received: from SN7PR11MB6798.namprd11.prod.outlook.com (2603:10b6:806:262::8)\r\n by DM4PR11MB5971.namprd11.prod.outlook.com with HTTPS; Mon, 30 Nov 2026\r\n 09:12:03 +0000\r\nReceived: from BN9PR03CA0571.namprd03.prod.outlook.com (2603:10b6:408:10d::6)\r\n by SN7PR11MB6798.namprd11.prod.outlook.com (2603:10b6:806:262::8) with\r\n Microsoft SMTP Server (version=TLS1_2,\r\n cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.8207.21; Mon, 30 Nov\r\n 2026 09:12:02 +0000\r\nAuthentication-Results: spf=pass (sender IP is 198.51.100.25)\r\n smtp.mailfrom=shop.example; dkim=pass (signature was verified)\r\n header.d=shop.example;dmarc=pass action=none header.from=shop.example;\r\nReceived-SPF: Pass (protection.outlook.com: domain of shop.example designates\r\n 198.51.100.25 as permitted sender) receiver=protection.outlook.com;\r\n client-ip=198.51.100.25; helo=mail.shop.example; pr=C\r\nReceived: from mail.shop.example (198.51.100.25) by\r\n BN2PEPF000044A7.mail.protection.outlook.com (10.167.243.158) with Microsoft SMTP\r\n Server (version=TLS1_3, cipher=TLS_AES_256_GCM_SHA384) id 15.20.8207.12 via\r\n Frontend Transport; Mon, 30 Nov 2026 09:12:01 +0000\r\n";
        const SENT: &str = "Received: from pc.shop.example ([192.168.1.20]) by mail.shop.example\r\n with ESMTPSA id 4c1; Mon, 30 Nov 2026 09:12:00 +0000\r\nFrom: news@shop.example\r\nSubject: Our winter sale\r\nDate: Mon, 30 Nov 2026 09:11:59 +0000\r\n\r\nTwenty per cent off everything this week.\r\n";
        let exchange = InternalHosts::parse("outlook.com\n2603:1000::/24\n", None).expect("list");
        let walking =
            Arc::new(default_rules_with_a_model().with_internal_hosts(Arc::new(exchange)));
        let plain = Arc::new(default_rules_with_a_model());
        let probability = |rules: &Arc<CompiledRules>, msg: &str| {
            crate::rules::scan::scanned(rules, msg.as_bytes())
                .probability()
                .expect("a model")
        };
        let routed = format!("{EXCHANGE}{SENT}");
        let sent = probability(&plain, SENT);
        assert_eq!(probability(&walking, &routed), sent);
        assert_eq!(probability(&walking, SENT), sent);
        assert_ne!(probability(&plain, &routed), sent);
    }

    /// A model that weighs nothing but the hit of rule `MARKER`: the band follows that hit
    /// alone, and exactly one band is hit, before and after the message ends.
    #[test]
    fn rule_hits_are_features_of_the_classifier() {
        let text = r#"
[[rule]]
name = "MARKER"
description = "a marker phrase"
score = 0.1
target = "body"
phrases = ["unusual marker"]
"#;
        let rules = CompiledRules::compile(
            &[RuleSource {
                origin: "test".into(),
                text: text.into(),
            }],
            5.0,
        )
        .expect("compiles");
        let mut w = vec![0f32; 256];
        w[(rule_feature("MARKER") >> 24) as usize] = 100.0;
        let model = Model::from_weights(&w, -3.0, 1).expect("model");
        let rules = Arc::new(rules.with_model(Arc::new(model)).expect("attaches"));
        for (row, body, band) in [
            (
                "marker",
                &b"an unusual marker here\r\n"[..],
                "CLASSIFIER_99",
            ),
            ("plain", b"nothing to see here\r\n", "CLASSIFIER_20"),
        ] {
            let mut scan = Scan::new(Arc::clone(&rules));
            scan.event(ScanEvent::Header {
                depth: 0,
                name: b"Subject",
                value: b"hello",
            });
            scan.event(ScanEvent::HeaderEnd);
            scan.event(ScanEvent::PartStart {
                depth: 0,
                content_type: b"text/plain",
                filename: None,
            });
            scan.event(ScanEvent::Text(body));
            for stage in ["open", "finished"] {
                let names = scan.hit_names();
                let bands: Vec<&str> = names
                    .split(',')
                    .filter(|n| n.starts_with("CLASSIFIER_"))
                    .collect();
                assert_eq!(bands, [band], "{row} {stage}: {names}");
                scan.finish(100);
            }
        }
    }
}
