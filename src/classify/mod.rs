//! The statistical spam classifier: a tokenizer fed by the message pipeline's scan events, a
//! hashed-feature logistic-regression [`Model`] with its compact file format, and the trainer.
//!
//! Owns: turning scan events into a bounded set of hashed features, scoring that set, reading
//! and writing model files (bytes in, bytes out), training from labelled feature sets.
//! Must not touch: I/O, the clock, rule logic (the rule engine turns the probability into
//! `CLASSIFIER_*` hits), configuration.
//!
//! The method is online logistic regression over binary, length-normalised hashed features,
//! the family that did best in the TREC spam tracks (Goodman and Yih 2006; Sculley and
//! Wachman 2007): each distinct token of a message sets one feature, the feature vector is
//! scaled to unit length, and the probability of spam is `σ(bias + Σ w / √n)`. Hashing keeps
//! the model a fixed array of `2^bits` quantised weights: loading is one checked copy. The
//! trainer scales each feature by its naive-Bayes evidence (NBSVM, Wang and Manning 2012) and
//! folds that scale into the weights it writes, so scoring does not see it.
//!
//! Tokens ([`Tokenizer`]):
//! - each top-level header field's name as sent (`MIME-Version` and `Mime-Version` differ);
//! - words of the values of the top-level header fields a short list names (`Subject`, the
//!   address fields, `Received`, `Content-Type`, the mailer, the list fields...), prefixed by
//!   the lower-cased field name, and the domain of address fields; digits-only words in headers
//!   other than `Subject` are left out, and the values of other fields (`Date`, signatures,
//!   ids, a platform's own `X-` fields) are not read (tokenizer version 13);
//! - media type, transfer encoding and disposition of MIME parts; file-name extensions; the
//!   number of parts (cumulative buckets); the top-level media type (HTML-only mail);
//! - words and word pairs of the decoded text (HTML already reduced to text);
//! - URL scheme, host, registrable-domain approximation and path words;
//! - at the verdict, the name of each rule the message hits ([`rule_feature`]).
//!
//! Header fields that collectors' own filters and clients add (`X-Spam-*`, `X-Bogosity`,
//! `Status`, ... see [`is_collection_artefact`]) and those that final delivery into their
//! mailboxes adds (`Delivered-To`, `X-Original-To`, ...) are never tokenized: a model that learns
//! them scores well on archives and fails in production. `Return-Path`, which final delivery
//! writes from the envelope, is read from the envelope at the relay
//! ([`Tokenizer::envelope_sender`]), so a model trained on delivered mail sees the same field
//! there. At the relay every message has one; an archived message without the field (150 of
//! the corpus's 2,010 spam, 4 of its ham) is read as mail whose envelope sender is not known,
//! not as mail without one (tokenizer version 12).
#![forbid(unsafe_code)]

mod hops;
mod model;
mod token;
mod train;

pub use hops::{is_receiving_trace, Fate, Hop, InternalHosts, Walk};
pub use model::{Model, ModelError, MODEL_VERSION, TOKENIZER_VERSION};
pub use token::{
    is_collection_artefact, registrable, rule_feature, Features, Tokenizer, MAX_TEXT_BYTES,
    MAX_TOKENS, MAX_TOKEN_BYTES,
};
pub use train::{scale_of, train, train_on_threads, train_scaled, Scale, TrainParams};
