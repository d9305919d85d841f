//! The statistical classifier inside the rule engine: attaching a [`Model`] to
//! [`CompiledRules`] adds one rule per probability band ([`CLASSIFIER_BANDS`]); a [`Scan`]
//! then feeds its events to a [`Tokenizer`] too, and the band its probability falls in is a
//! hit like any other, so rules and classifier share one score and `spam.threshold`.
//!
//! [`Scan`]: crate::rules::Scan

use std::sync::Arc;

use crate::classify::{Model, Tokenizer};
use crate::rules::compile::CompiledRules;
use crate::rules::file::{Action, Matcher, RuleError, RuleSpec, Target};
use crate::rules::verdict::HitSet;
use crate::rules::RuleId;

/// The band rules a model adds: name, lowest probability (inclusive), highest (exclusive),
/// score. With the default threshold 5.0, `CLASSIFIER_99` flags a message on its own,
/// `CLASSIFIER_95` with one or two more rules, and the low bands take points away from rules that
/// hit on mail the classifier is sure is ham.
pub const CLASSIFIER_BANDS: &[(&str, f64, f64, f64)] = &[
    ("CLASSIFIER_99", 0.99, 2.0, 5.0),
    ("CLASSIFIER_95", 0.95, 0.99, 3.0),
    ("CLASSIFIER_80", 0.80, 0.95, 1.0),
    ("CLASSIFIER_20", 0.01, 0.20, -2.0),
    ("CLASSIFIER_01", -1.0, 0.01, -4.0),
];

/// The model and the ids of its band rules.
#[derive(Debug)]
pub(crate) struct ClassifierRules {
    pub model: Arc<Model>,
    /// Per band: its rule, lowest and highest probability.
    pub bands: Vec<(RuleId, f64, f64)>,
}

impl ClassifierRules {
    /// Sets the band rule that `tokens`' probability falls in.
    pub fn set_hit(&self, tokens: &Tokenizer, hits: &mut HitSet) {
        let p = tokens.features().probability();
        if let Some(&(id, _, _)) = self.bands.iter().find(|&&(_, lo, hi)| p >= lo && p < hi) {
            hits.set(id);
        }
    }
}

impl CompiledRules {
    /// These rules plus the classifier `model` and its band rules ([`CLASSIFIER_BANDS`]).
    /// Fails when a rule file already uses one of the band names.
    pub fn with_model(mut self, model: Arc<Model>) -> Result<CompiledRules, RuleError> {
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
        self.classifier = Some(ClassifierRules { model, bands });
        Ok(self)
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
